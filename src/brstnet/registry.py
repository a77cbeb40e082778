"""The project's registries (backbones, dataset layouts, metrics, executors, target
transforms): one lookup with one message (the valid names and the closest one); the
dataset layouts and the metrics also take additions from other packages through
entry points (:func:`load_plugins`)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from importlib.metadata import entry_points
from typing import Any, TypeVar

__all__ = ["load_plugins", "lookup", "unknown_name"]

T = TypeVar("T")


def unknown_name(name: object, valid: Iterable[str], what: str, where: str = "") -> str:
    """``unknown backbone 'resnet5O' (did you mean resnet50?); use one of ...``, and
    `` (where)`` when the name comes from a setting."""
    names = list(valid)
    close = difflib.get_close_matches(str(name), names, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    source = f" ({where})" if where else ""
    return f"unknown {what} {name!r}{hint}; use one of {', '.join(names)}{source}"


def lookup(
    registry: Mapping[str, T],
    name: str,
    what: str,
    *,
    where: str = "",
    error: type[Exception] = ValueError,
    sort: bool = False,
) -> T:
    """``registry[name]``.

    Args:
        what: What the names are, for the message (``backbone``, ``dataset``).
        where: The setting the name comes from (``data_processing.dataset``).
        error: The exception type to raise (a :class:`~brstnet.st.errors.DataError` for
            names read from data).
        sort: List the valid names sorted (else in registration order).

    Raises:
        error: an unknown name, with :func:`unknown_name`'s message.
    """
    try:
        return registry[name]
    except KeyError:
        valid = sorted(registry) if sort else list(registry)
        raise error(unknown_name(name, valid, what, where)) from None


_PLUGINS: dict[str, list[Any]] = {}


def load_plugins(group: str) -> list[Any]:
    """What other packages name in the entry-point ``group`` (``brstnet.layouts``,
    ``brstnet.metrics``), loaded once per process: each entry point is imported and its
    object returned (a module registers what it declares when imported).

    A package adds a dataset layout or a metric without touching brstnet, e.g. in its
    ``pyproject.toml``::

        [project.entry-points."brstnet.metrics"]
        my_metrics = "my_package.metrics"
    """
    if group not in _PLUGINS:
        _PLUGINS[group] = [entry.load() for entry in entry_points(group=group)]
    return _PLUGINS[group]
