"""Put raw files in place: her2st from a local copy or by HTTPS download, or a data set's
public zip (:func:`acquire_archive`). Folders read in place are checked by
:func:`brstnet.st.layouts.read_in_place`.

her2st downloads fetch exactly the files a run needs from the public repository at a pinned
commit, check each against the sha256 recorded in ``her2st_files.json``, resume a broken
transfer from its ``.part`` file and only then rename it into place, so that a crash
never leaves a half-written file under its final name.

Downloaded files are untrusted: only ``https://`` addresses are fetched (other schemes,
e.g. ``file://`` in tests, only when a caller allows them explicitly), each download is
cut at a size limit, an archive is not downloaded without a checksum to verify it against
unless the user opts in (``trust_first_download``), and its member count and unpacked
size are checked before anything is extracted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from tqdm.auto import tqdm

from . import her2st
from .errors import AcquisitionError

logger = logging.getLogger(__name__)

CHUNK = 1 << 20
#: Defaults of the limits on what a download may bring (``data_processing.source``).
MAX_DOWNLOAD_BYTES = 20 * 10**9
MAX_UNPACKED_BYTES = 40 * 10**9
MAX_ARCHIVE_MEMBERS = 100_000


def known_files() -> dict:
    """The pinned commit and the sha256 of every file brstnet knows how to fetch."""
    text = resources.files(__package__).joinpath("her2st_files.json").read_text()
    return json.loads(text)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Source:
    """Where raw files come from.

    Attributes:
        raw_dir: Destination of downloads and copies (the project's data/01_raw/her2st).
        local_dir: A folder holding the data set in its published layout: her2st copies
            from it when it exists, the other layouts read it in place.
        base_url: her2st: URL prefix of the repository at ``commit`` ("{commit}" is filled in).
        commit: her2st: the pinned commit (default: the one in ``her2st_files.json``).
        timeout_s: Network timeout per request.
        archive_url: he2020: the public zip, downloaded when ``local_dir`` does not exist.
        archive_sha256: Expected checksum of that zip (None: the one recorded at its first
            download, see :func:`acquire_archive`).
        trust_first_download: Without ``archive_sha256`` or a recorded checksum, download
            the archive anyway and record its sha256 (else refused).
        max_download_bytes: A download larger than this is refused (or cut and removed).
        max_unpacked_bytes: An archive unpacking to more is refused before extraction.
        max_archive_members: An archive with more files is refused before extraction.
        url_schemes: The URL schemes fetched: https only, unless a caller (a test with
            ``file://``) allows others explicitly.
    """

    raw_dir: Path
    local_dir: Path | None = None
    base_url: str | None = None
    commit: str = field(default_factory=lambda: known_files()["commit"])
    timeout_s: float = 60.0
    archive_url: str | None = None
    archive_sha256: str | None = None
    trust_first_download: bool = False
    max_download_bytes: int = MAX_DOWNLOAD_BYTES
    max_unpacked_bytes: int = MAX_UNPACKED_BYTES
    max_archive_members: int = MAX_ARCHIVE_MEMBERS
    url_schemes: tuple[str, ...] = ("https",)

    def url(self, relpath: str) -> str:
        assert self.base_url is not None
        return self.base_url.format(commit=self.commit).rstrip("/") + "/" + relpath


def section_files(section: str, local_dir: Path | None) -> list[str]:
    """Relative paths of the files a section needs (counts, spot file, image)."""
    files = [her2st.counts_path(section), her2st.spots_path(section)]
    folder = her2st.image_dir(section)
    images = [p for p in known_files()["files"] if p.startswith(folder + "/")]
    if not images and local_dir is not None and (local_dir / folder).is_dir():
        images = [
            str(p.relative_to(local_dir))
            for p in sorted((local_dir / folder).iterdir())
            if p.suffix.lower() in her2st.IMAGE_SUFFIXES
        ]
    if not images:
        msg = (
            f"section {section}: the file name of its H&E image is not recorded in brstnet "
            f"(only {', '.join(sorted({p.split('/')[3] for p in known_files()['files'] if p.startswith('data/ST-imgs')}))} are); "
            f"download it from the her2st repository (github.com/almaan/her2st, {folder}/) "
            f"into the raw folder's {folder}/ yourself, or drop the section"
        )
        raise AcquisitionError(msg)
    return files + images


def _verify(
    path: Path, expected: str | None, what: str, fix: str = "the file was removed, run again"
) -> None:
    if expected is None:
        logger.warning("%s has no recorded sha256 and was not verified", what)
        return
    actual = sha256_of(path)
    if actual != expected:
        path.unlink(missing_ok=True)
        msg = f"{what}: sha256 {actual} does not match the recorded {expected}; {fix}"
        raise AcquisitionError(msg)


def _copy(src: Path, dest: Path, expected: str | None) -> None:
    part = dest.with_name(dest.name + ".part")
    shutil.copyfile(src, part)
    # the local copy is left as it is: running again would fail the same way
    fix = (
        f"the file in the local copy (data_processing.source.local_dir) is damaged or another "
        f"version: replace {src} with the published file, or remove it to download it"
    )
    _verify(part, expected, str(src), fix)
    os.replace(part, dest)


def check_url(url: str, schemes: tuple[str, ...] = ("https",)) -> None:
    """Refuse an address whose scheme is not in ``schemes`` (https only by default)."""
    if urllib.parse.urlsplit(url).scheme.lower() not in schemes:
        raise AcquisitionError(
            f"refusing to download {url}: only {', '.join(f'{s}://' for s in schemes)} "
            "addresses are fetched; set data_processing.source.base_url / archive_url to an "
            "https:// address"
        )


def _too_large(url: str, size: int, limit: int) -> AcquisitionError:
    return AcquisitionError(
        f"{url} is {size:,} bytes, more than the download limit of {limit:,} bytes "
        "(data_processing.source.max_download_gb); raise the limit if the file is meant to "
        "be that large"
    )


def _download(
    url: str,
    dest: Path,
    expected: str | None,
    timeout_s: float,
    *,
    max_bytes: int = MAX_DOWNLOAD_BYTES,
    schemes: tuple[str, ...] = ("https",),
) -> None:
    """Download with resume: an existing ``.part`` file is continued with a Range request.

    Raises:
        AcquisitionError: a scheme not in ``schemes``, more than ``max_bytes`` (announced,
            or streamed: the partial file is removed), a failed transfer or a checksum
            that does not match.
    """
    check_url(url, schemes)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            resumed = have > 0 and response.status == 206
            if not resumed:
                have = 0
            total = response.headers.get("Content-Length")
            total = int(total) + have if total is not None else None
            if total is not None and total > max_bytes:
                part.unlink(missing_ok=True)
                raise _too_large(url, total, max_bytes)
            with (
                open(part, "ab" if resumed else "wb") as handle,
                tqdm(
                    total=total,
                    initial=have,
                    unit="B",
                    unit_scale=True,
                    desc=dest.name,
                    leave=False,
                ) as bar,
            ):
                size = have
                for block in iter(lambda: response.read(CHUNK), b""):
                    size += len(block)
                    if size > max_bytes:
                        handle.close()
                        part.unlink(missing_ok=True)
                        raise _too_large(url, size, max_bytes)
                    handle.write(block)
                    bar.update(len(block))
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # the .part file is already complete
            pass
        else:
            raise AcquisitionError(
                f"download of {url} failed: HTTP {err.code} {err.reason}"
            ) from err
    except (urllib.error.URLError, TimeoutError, OSError) as err:
        msg = (
            f"download of {url} failed ({err}). Offline? Point data_processing.source.local_dir "
            "at a local copy of the data set (her2st: github.com/almaan/her2st), or run again when "
            f"online: the partial file {part} is resumed"
        )
        raise AcquisitionError(msg) from err
    _verify(part, expected, url)
    os.replace(part, dest)


def acquire(sections: list[str], source: Source) -> dict:
    """Make the raw files of ``sections`` present and verified under ``source.raw_dir``.

    Returns:
        A manifest: the root folder, how the files were obtained, and per section the
        relative paths of its counts, spot file and image.
    """
    local = source.local_dir if source.local_dir is not None and source.local_dir.is_dir() else None
    if source.local_dir is not None and local is None:
        logger.info("local her2st copy %s not found; downloading instead", source.local_dir)
    if local is None and not source.base_url:
        msg = (
            "no her2st source: set data_processing.source.local_dir to a copy of the her2st "
            "repository or data_processing.source.base_url to download it"
        )
        raise AcquisitionError(msg)
    sums = known_files()["files"]
    manifest: dict = {
        "dataset": "her2st",
        "root": str(source.raw_dir),
        "commit": source.commit,
        "sections": {},
    }
    fetched = {"present": 0, "copied": 0, "downloaded": 0}
    for section in tqdm(
        [her2st.check_section(s) for s in sections], desc="acquire her2st", unit="section"
    ):
        relpaths = section_files(section, local)
        for relpath in relpaths:
            dest = source.raw_dir / relpath
            expected = sums.get(relpath)
            if dest.is_file() and (expected is None or sha256_of(dest) == expected):
                fetched["present"] += 1
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            if local is not None and (local / relpath).is_file():
                _copy(local / relpath, dest, expected)
                fetched["copied"] += 1
            elif source.base_url:
                try:
                    _download(
                        source.url(relpath),
                        dest,
                        expected,
                        source.timeout_s,
                        max_bytes=source.max_download_bytes,
                        schemes=source.url_schemes,
                    )
                except AcquisitionError as err:
                    if local is None:
                        raise
                    raise AcquisitionError(
                        f"section {section}: {relpath} is missing from the local copy {local} "
                        f"(data_processing.source.local_dir), and downloading it failed: {err}. "
                        f"Copy the file to {local / relpath}, or run again online"
                    ) from err
                fetched["downloaded"] += 1
            else:
                msg = f"section {section}: {relpath} is not in the local copy {local} and no base_url is set"
                raise AcquisitionError(msg)
        manifest["sections"][section] = dict(
            zip(("counts", "spots", "image"), relpaths, strict=True)
        )
    logger.info(
        "her2st raw files in %s: %d already present, %d copied from %s, %d downloaded",
        source.raw_dir,
        fetched["present"],
        fetched["copied"],
        local,
        fetched["downloaded"],
    )
    manifest["obtained"] = fetched
    return manifest


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
    from ..atomic import atomic_file

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
    import zipfile

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
        max_download_bytes, max_unpacked_bytes, max_members: Limits on the zip's size,
            its unpacked size and its number of members (checked before extraction).

    Returns:
        The folder holding ``marker``.
    """
    import zipfile

    from ..atomic import atomic_folder

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
        _download(url, archive, expected, timeout_s, max_bytes=max_download_bytes, schemes=schemes)
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
