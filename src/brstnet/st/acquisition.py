"""Put raw files in place, generically: a pinned file copied from a local copy or
downloaded (:func:`fetch_file`), checked against its sha256. A data set's own download
code (the files it needs, where they are published) lives in its dataset module; a
public zip is fetched by :mod:`brstnet.st.archives`.

A download resumes a broken transfer from its ``.part`` file and only then renames it
into place, so that a crash never leaves a half-written file under its final name.

Downloaded files are untrusted: only ``https://`` addresses are fetched (other schemes,
e.g. ``file://`` in tests, only when a caller allows them explicitly), and each download
is cut at a size limit.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from .errors import AcquisitionError

logger = logging.getLogger(__name__)

CHUNK = 1 << 20
#: Defaults of the limits on what a download may bring (``data_processing.source``).
MAX_DOWNLOAD_BYTES = 20 * 10**9
MAX_UNPACKED_BYTES = 40 * 10**9
MAX_ARCHIVE_MEMBERS = 100_000


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
        base_url: URL prefix of a published repository at ``commit`` ("{commit}" is
            filled in; her2st).
        commit: The pinned commit (None: the data set's own, e.g. her2st's in
            ``her2st_files.json``).
        timeout_s: Network timeout per request.
        archive_url: he2020: the public zip, downloaded when ``local_dir`` does not exist.
        archive_sha256: Expected checksum of that zip (None: the one recorded at its first
            download, see :func:`brstnet.st.archives.acquire_archive`).
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
    commit: str | None = None
    timeout_s: float = 60.0
    archive_url: str | None = None
    archive_sha256: str | None = None
    trust_first_download: bool = False
    max_download_bytes: int = MAX_DOWNLOAD_BYTES
    max_unpacked_bytes: int = MAX_UNPACKED_BYTES
    max_archive_members: int = MAX_ARCHIVE_MEMBERS
    url_schemes: tuple[str, ...] = ("https",)

    def url(self, relpath: str) -> str:
        """``base_url`` at ``commit``, followed by ``relpath``.

        Raises:
            ValueError: no ``base_url``, or one naming ``{commit}`` without a commit (the
                layout pins its own: her2st's acquire fills it in).
        """
        if self.base_url is None:
            raise ValueError("no base_url to download from")
        if "{commit}" in self.base_url and self.commit is None:
            raise ValueError(f"base_url {self.base_url} names a commit; none was given")
        return self.base_url.format(commit=self.commit).rstrip("/") + "/" + relpath


def verify(
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


def copy_verified(src: Path, dest: Path, expected: str | None) -> None:
    """Copy ``src`` to ``dest`` through a ``.part`` file, verified before the rename."""
    part = dest.with_name(dest.name + ".part")
    shutil.copyfile(src, part)
    # the local copy is left as it is: running again would fail the same way
    fix = (
        f"the file in the local copy (data_processing.source.local_dir) is damaged or another "
        f"version: replace {src} with the published file, or remove it to download it"
    )
    verify(part, expected, str(src), fix)
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


def download(
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
    verify(part, expected, url)
    os.replace(part, dest)


def fetch_file(
    relpath: str, expected: str | None, source: Source, local: Path | None, what: str
) -> str:
    """Make ``source.raw_dir / relpath`` present and verified: kept when it already
    matches ``expected``, else copied from the local copy ``local`` when it holds the
    file, else downloaded from ``source.base_url``.

    Args:
        what: The file's owner in messages (``section B4``).

    Returns:
        How it came to be there: ``present``, ``copied`` or ``downloaded``.

    Raises:
        AcquisitionError: neither source has it, the download failed or a checksum does
            not match.
    """
    dest = source.raw_dir / relpath
    if dest.is_file() and (expected is None or sha256_of(dest) == expected):
        return "present"
    dest.parent.mkdir(parents=True, exist_ok=True)
    if local is not None and (local / relpath).is_file():
        copy_verified(local / relpath, dest, expected)
        return "copied"
    if not source.base_url:
        msg = f"{what}: {relpath} is not in the local copy {local} and no base_url is set"
        raise AcquisitionError(msg)
    try:
        download(
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
            f"{what}: {relpath} is missing from the local copy {local} "
            f"(data_processing.source.local_dir), and downloading it failed: {err}. "
            f"Copy the file to {local / relpath}, or run again online"
        ) from err
    return "downloaded"
