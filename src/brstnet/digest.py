"""Content digests of files: what a fingerprint holds for a file named in the settings."""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_digest(path: str | Path | None) -> str | None:
    """blake2b of a file's bytes (None for no path or a missing file): initial weights
    belong in a training's fingerprint by content, not by name."""
    if not path or not Path(path).is_file():
        return None
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
