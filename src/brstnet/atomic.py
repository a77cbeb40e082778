"""Atomic writes: build under a temporary name next to the target, then rename.

A crash leaves the previous version (or nothing), never a half-written file or folder.
The temporary names record their owner (host, pid and start time, see
:mod:`brstnet.processes`), so that the next write of the same target removes what a killed
process left behind (``.<name>.<owner>.<random>.tmp``, ``.<name>.<owner>.<random>/``) and,
when a kill fell between the two renames of :func:`atomic_folder`, puts the previous
version back. Leftovers of a live process, or of one on another host, are left alone.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .processes import Owner

logger = logging.getLogger(__name__)

#: ``<owner>.<random>`` followed by ``.tmp[<suffix>]`` (a file), nothing (a folder being
#: filled) or ``.old`` (the previous folder, set aside for the swap).
_OWNED = re.compile(r"^(?P<owner>[A-Za-z0-9-]+~\d+~\d+)\.[A-Za-z0-9_]+(?P<kind>\.tmp.*|\.old)?$")
#: What brstnet wrote before temporary names recorded their owner.
_UNOWNED = re.compile(r"^(?:[a-z0-9_]{8}(?:\.tmp)?|old)$")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _remove(entry: Path) -> None:
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry, ignore_errors=True)
    else:
        entry.unlink(missing_ok=True)


def remove_leftovers(path: str | Path) -> list[Path]:
    """Remove the temporary files and folders killed writes of ``path`` left behind.

    An entry is a leftover when its owner is a process of this host that is gone, or when
    it records no owner (written before owners were recorded). A previous folder set
    aside by a swap that was killed half-way (``path`` itself missing) is renamed back.

    Returns:
        The leftovers found (removed or restored).
    """
    path = Path(path)
    prefix = f".{path.name}."
    found = []
    for entry in sorted(path.parent.glob(glob.escape(prefix) + "*")):
        rest = entry.name[len(prefix) :]
        match = _OWNED.match(rest)
        if match is not None:
            owner = Owner.parse(match["owner"])
            if owner is None or not owner.gone():
                continue
            old = match["kind"] == ".old"
        elif _UNOWNED.match(rest):
            old = rest == "old"
        else:
            continue
        found.append(entry)
        if old and not path.exists():
            os.replace(entry, path)
            logger.warning(
                "%s: restored the previous version from %s (a killed write)", path, entry
            )
        else:
            _remove(entry)
            logger.warning("%s: removed %s, left by a killed write", path, entry.name)
    return found


@contextmanager
def atomic_file(path: str | Path, *, keep_suffix: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write; it replaces ``path`` when the block succeeds.

    Args:
        keep_suffix: End the temporary name with ``path``'s suffix too (``.tmp.png``),
            for writers that choose the format by the file name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(path)
    suffix = ".tmp" + (path.suffix if keep_suffix else "")
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.{Owner.current().token}.", suffix=suffix, dir=path.parent
    )
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600 files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder to fill; it replaces the folder ``path`` when the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.{Owner.current().token}.", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp creates a 0700 folder
        old = tmp.with_name(tmp.name + ".old")  # unique: never blocked by another's leftover
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
