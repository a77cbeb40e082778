"""MkDocs hook: docstring problems in ``src/`` are reported, not fatal.

``mkdocs build --strict`` fails on any warning. The API pages render the docstrings of
``src/brstnet``; griffe's complaints about them (a Google ``Args:`` entry naming two
parameters at once, a ``Raises:`` entry without an exception type) and autorefs' about
a shape such as ``obsm["spatial"] [n_spots, 2]`` read as a Markdown reference are about
the code's docstrings, not about this site. They are logged as INFO with the prefix
``docstring:`` so they stay visible; every warning about the pages themselves (a broken
link, a missing page, an unknown object in a ``:::`` block) still fails the build.

The docstrings also use Sphinx roles (``:func:`select_panel```), which Markdown renders as
``:func:`` before the name; the role is dropped from the rendered page, the name kept.
"""

from __future__ import annotations

import logging
import re

_PREFIX = "docstring: "


class _DocstringWarnings(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.WARNING or record.msg.startswith(_PREFIX):
            return True
        message = record.getMessage()
        from_src = message.startswith("griffe: src/") or (
            "Could not find cross-reference target" in message and "/src/brstnet/" in message
        )
        if from_src:
            record.msg, record.args = _PREFIX + message, ()
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def on_startup(command: str, dirty: bool = False) -> None:
    """Put the filter in front of every handler of mkdocs' logger (the strict counter
    among them), so the record is demoted before any of them counts it."""
    docstrings = _DocstringWarnings()
    for handler in logging.getLogger("mkdocs").handlers:
        if docstrings not in handler.filters:
            handler.filters.insert(0, docstrings)


_SPHINX_ROLE = re.compile(r":(?:py:)?(?:func|class|mod|meth|attr|data|exc|obj|const):(?=<code>)")


def on_page_content(html: str, **kwargs: object) -> str:
    """Drop Sphinx roles left in front of rendered code (``:func:<code>x</code>``)."""
    return _SPHINX_ROLE.sub("", html)
