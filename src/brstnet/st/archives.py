"""A data set's public zip: downloaded (resumable, checksummed through
:func:`brstnet.st.acquisition.download`) and unpacked once.

An archive is not downloaded without a checksum to verify it against unless the user opts
in (``trust_first_download``): then the size and sha256 of its first download are
recorded next to it, and every later download is checked against them. Its member count
and unpacked size are checked before anything is extracted.
"""

from __future__ import annotations

import json
import logging
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

from tqdm.auto import tqdm

from ..atomic import atomic_file, atomic_folder
from .acquisition import (
    MAX_ARCHIVE_MEMBERS,
    MAX_DOWNLOAD_BYTES,
    MAX_UNPACKED_BYTES,
    Source,
    check_url,
    download,
    sha256_of,
)
from .errors import AcquisitionError
from .layouts import read_in_place

logger = logging.getLogger(__name__)


def archive_record_path(url: str, raw_dir: Path) -> Path:
    """Where the size and sha256 of a downloaded archive are recorded (next to the zip)."""
    return raw_dir / f"{_archive_name(url)}.sha256.json"


def read_archive_record(url: str, raw_dir: Path) -> dict | None:
    """The recorded ``url``, ``size`` and ``sha256`` of an archive, or None before its first download."""
    path = archive_record_path(url, raw_dir)
    return json.loads(path.read_text()) if path.is_file() else None


def _archive_name(url: str) -> str:
    return url.rstrip("/").split("/")[-1].split("?")[0] or "archive.zip"


def _record_archive(url: str, archive: Path, raw_dir: Path, *, first_use: bool) -> dict:
    record = {"url": url, "size": archive.stat().st_size, "sha256": sha256_of(archive)}
    with atomic_file(archive_record_path(url, raw_dir)) as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n")
    if not first_use:
        return record
    logger.warning(
        "%s publishes no checksum: recorded size %d and sha256 %s of this first download in "
        "%s; later downloads are verified against it (delete that file to record again)",
        url,
        record["size"],
        record["sha256"],
        archive_record_path(url, raw_dir),
    )
    return record


def check_archive(
    archive: Path, *, max_members: int = MAX_ARCHIVE_MEMBERS, max_bytes: int = MAX_UNPACKED_BYTES
) -> None:
    """Refuse (and remove) a zip with more members or more unpacked bytes than allowed,
    before anything is extracted (zipfile never writes more than a member's recorded size).
    """
    try:
        with zipfile.ZipFile(archive) as zipped:
            members = zipped.infolist()
    except zipfile.BadZipFile as err:
        raise AcquisitionError(
            f"{archive} is not a zip archive ({err}); delete it and run again"
        ) from err
    unpacked = sum(m.file_size for m in members)
    problem = None
    if len(members) > max_members:
        problem = f"holds {len(members):,} members, more than {max_members:,}"
    elif unpacked > max_bytes:
        problem = (
            f"unpacks to {unpacked:,} bytes, more than {max_bytes:,} "
            "(data_processing.source.max_unpacked_gb)"
        )
    if problem:
        archive.unlink(missing_ok=True)
        raise AcquisitionError(
            f"{archive} {problem}: not the expected data set, or a zip bomb; it was removed"
        )


def acquire_archive(
    url: str,
    raw_dir: Path,
    *,
    sha256: str | None,
    marker: str,
    timeout_s: float = 60.0,
    trust_first_download: bool = False,
    max_download_bytes: int = MAX_DOWNLOAD_BYTES,
    max_unpacked_bytes: int = MAX_UNPACKED_BYTES,
    max_members: int = MAX_ARCHIVE_MEMBERS,
    schemes: tuple[str, ...] = ("https",),
) -> Path:
    """Download a data set's public zip (resumable, checksummed) and unpack it once.

    Args:
        url: The archive's address (https://; others only when in ``schemes``).
        raw_dir: Where the zip and the unpacked folder go.
        sha256: Expected checksum of the zip. None: the one recorded at the first download
            (``<zip>.sha256.json`` next to it, with the size); before that, only with
            ``trust_first_download``, which records it (trust on first use, with a warning).
        marker: A file name the data set holds (e.g. ``metadata.csv``); its folder is the root.
        max_download_bytes: Limit on the zip's size (checked before extraction).
        max_unpacked_bytes: Limit on its unpacked size.
        max_members: Limit on its number of members.

    Returns:
        The folder holding ``marker``.
    """
    check_url(url, schemes)
    name = _archive_name(url)
    archive = raw_dir / name
    unpacked = raw_dir / Path(name).stem
    found = sorted(unpacked.rglob(marker)) if unpacked.is_dir() else []
    if found:
        return found[0].parent
    recorded = read_archive_record(url, raw_dir)
    expected = sha256 or (recorded or {}).get("sha256")
    if expected is None and not trust_first_download:
        raise AcquisitionError(
            f"no sha256 to check {url} against: set data_processing.source.archive_sha256 "
            "to its checksum, or data_processing.source.trust_first_download: true to "
            f"download it once and record its size and sha256 ({archive_record_path(url, raw_dir)}),"
            " against which every later download is checked"
        )
    raw_dir.mkdir(parents=True, exist_ok=True)
    if archive.is_file() and expected is not None and sha256_of(archive) != expected:
        archive.unlink()
    if not archive.is_file():
        download(url, archive, expected, timeout_s, max_bytes=max_download_bytes, schemes=schemes)
    check_archive(archive, max_members=max_members, max_bytes=max_unpacked_bytes)
    try:
        with zipfile.ZipFile(archive) as zipped, atomic_folder(unpacked) as tmp:
            for member in tqdm(zipped.infolist(), desc=f"unpack {name}", unit="file", leave=False):
                zipped.extract(member, tmp)
    except zipfile.BadZipFile as err:
        raise AcquisitionError(
            f"{archive} is not a zip archive ({err}); delete it and run again"
        ) from err
    found = sorted(unpacked.rglob(marker))
    if not found:
        raise AcquisitionError(f"{archive} holds no {marker}; is it the right data set?")
    if recorded is None:  # only a zip that unpacked is recorded
        _record_archive(url, archive, raw_dir, first_use=expected is None)
    logger.info("unpacked %s into %s", archive, found[0].parent)
    return found[0].parent


def read_in_place_or_download(
    dataset: str,
    available: Callable[[Path], list[str]],
    sections: Sequence[str],
    source: Source,
    *,
    marker: str,
    hint: str,
) -> dict:
    """Read in place from ``source.local_dir``; when that folder does not exist and
    ``source.archive_url`` is set, download and unpack the archive into ``source.raw_dir``
    (:func:`acquire_archive`, the folder holding ``marker`` is the root). The manifest then
    records the zip's url, size and sha256.

    Args:
        dataset: As for :func:`brstnet.st.layouts.read_in_place`.
        available: As for :func:`brstnet.st.layouts.read_in_place`.
        sections: As for :func:`brstnet.st.layouts.read_in_place`.
        source: As for :func:`brstnet.st.layouts.read_in_place`.
        hint: As for :func:`brstnet.st.layouts.read_in_place`.
        marker: A file name the data set holds (e.g. ``metadata.csv``).
    """
    root, obtained, archive = source.local_dir, "read in place", None
    if (root is None or not root.is_dir()) and source.archive_url:
        root = acquire_archive(
            source.archive_url,
            source.raw_dir,
            sha256=source.archive_sha256,
            marker=marker,
            timeout_s=source.timeout_s,
            trust_first_download=source.trust_first_download,
            max_download_bytes=source.max_download_bytes,
            max_unpacked_bytes=source.max_unpacked_bytes,
            max_members=source.max_archive_members,
            schemes=source.url_schemes,
        )
        obtained = f"downloaded from {source.archive_url}"
        archive = read_archive_record(source.archive_url, source.raw_dir) or {
            "url": source.archive_url,
            "sha256": source.archive_sha256,
        }
    manifest = read_in_place(
        dataset, available, sections, source, root=root, obtained=obtained, hint=hint
    )
    if archive is not None:
        manifest["archive"] = archive
    return manifest
