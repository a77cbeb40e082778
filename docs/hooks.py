"""MkDocs hook: Sphinx roles in the docstrings render as plain code.

The docstrings use Sphinx roles (``:func:`select_panel```), which Markdown renders as
``:func:`` before the name; the role is dropped from the rendered page, the name kept.
Everything else (griffe's checks of the docstrings against the signatures, broken links,
missing pages) fails ``mkdocs build --strict``.
"""

from __future__ import annotations

import re

_SPHINX_ROLE = re.compile(r":(?:py:)?(?:func|class|mod|meth|attr|data|exc|obj|const):(?=<code>)")


def on_page_content(html: str, **kwargs: object) -> str:
    """Drop Sphinx roles left in front of rendered code (``:func:<code>x</code>``)."""
    return _SPHINX_ROLE.sub("", html)
