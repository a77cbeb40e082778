"""Downloads of untrusted files (issue 17): https only (other schemes, file:// in tests,
only when allowed explicitly), a size limit, no unverified archive without an opt-in, and
an archive's member count and unpacked size checked before anything is extracted."""

from __future__ import annotations

import hashlib
import http.server
import random
import threading
import zipfile
from pathlib import Path

import pytest

from brstnet.st.acquisition import Source
from brstnet.st.archives import acquire_archive
from brstnet.st.errors import AcquisitionError
from brstnet.st.her2st import acquire, known_files

COMMIT = known_files()["commit"]
FILE = ("file",)


def _served(tmp_path: Path, relpath: str, data: bytes) -> str:
    """``data`` at ``<www>/<commit>/<relpath>``; returns the file:// base URL."""
    path = tmp_path / "www" / COMMIT / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return (tmp_path / "www").as_uri() + "/{commit}"


def test_only_https_is_downloaded_unless_another_scheme_is_allowed(tmp_path: Path) -> None:
    """Failed before: http://, ftp:// and file:// addresses were fetched as given."""
    for base in ("http://127.0.0.1:9/{commit}", "ftp://example.org/{commit}", "file:///etc"):
        source = Source(raw_dir=tmp_path / "raw", base_url=base, commit=COMMIT)
        with pytest.raises(
            AcquisitionError,
            match=r"refusing to download .*: only https:// addresses are fetched; set "
            r"data_processing.source.base_url / archive_url to an https:// address",
        ):
            acquire(["B4"], source)
    assert not (tmp_path / "raw").exists() or not any((tmp_path / "raw").rglob("*.*"))
    with pytest.raises(AcquisitionError, match="only https:// addresses are fetched"):
        acquire_archive(
            "http://example.org/29ntw7sh4r-5.zip",
            tmp_path / "raw",
            sha256="0" * 64,
            marker="metadata.csv",
        )


def _zip(path: Path, members: dict[str, bytes]) -> bytes:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zipped:
        for name, data in members.items():
            zipped.writestr(name, data)
    return path.read_bytes()


def test_a_download_larger_than_the_limit_is_refused(tmp_path: Path) -> None:
    """Failed before: any size was written to disk."""
    www = tmp_path / "www"
    www.mkdir()
    data = _zip(
        www / "29ntw7sh4r-5.zip",
        {"top/metadata.csv": b"x" * 10, "top/big.bin": random.Random(0).randbytes(5_000)},
    )
    url = (www / "29ntw7sh4r-5.zip").as_uri()
    raw = tmp_path / "raw"
    with pytest.raises(
        AcquisitionError,
        match=rf"{url} is {len(data):,} bytes, more than the download limit of 1,000 bytes "
        r"\(data_processing.source.max_download_gb\)",
    ):
        acquire_archive(
            url,
            raw,
            sha256=hashlib.sha256(data).hexdigest(),
            marker="metadata.csv",
            schemes=FILE,
            max_download_bytes=1_000,
        )
    assert not list(raw.rglob("*"))  # no partial file kept


class _Unsized(http.server.BaseHTTPRequestHandler):
    """Streams 64 kB without a Content-Length (read until the connection closes)."""

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        for _ in range(64):
            self.wfile.write(b"\0" * 1024)


def test_a_stream_without_a_length_is_cut_at_the_limit(tmp_path: Path) -> None:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Unsized)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/29ntw7sh4r-5.zip"
    raw = tmp_path / "raw"
    try:
        with pytest.raises(AcquisitionError, match=r"more than the download limit of 10,000 bytes"):
            acquire_archive(
                url,
                raw,
                sha256="0" * 64,
                marker="metadata.csv",
                schemes=("http",),
                max_download_bytes=10_000,
            )
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert not list(raw.rglob("*.part"))


def test_an_archive_without_a_checksum_needs_an_opt_in(tmp_path: Path) -> None:
    """Failed before: the first download of an unverifiable archive was trusted silently."""
    www = tmp_path / "www"
    www.mkdir()
    _zip(www / "29ntw7sh4r-5.zip", {"top/metadata.csv": b"patient\n"})
    url = (www / "29ntw7sh4r-5.zip").as_uri()
    raw = tmp_path / "raw"
    with pytest.raises(
        AcquisitionError,
        match=r"no sha256 to check .*29ntw7sh4r-5.zip against: set "
        r"data_processing.source.archive_sha256 to its checksum, or "
        r"data_processing.source.trust_first_download: true",
    ):
        acquire_archive(url, raw, sha256=None, marker="metadata.csv", schemes=FILE)
    assert not list(raw.rglob("*"))  # nothing downloaded
    root = acquire_archive(
        url, raw, sha256=None, marker="metadata.csv", schemes=FILE, trust_first_download=True
    )
    assert (root / "metadata.csv").is_file()
    assert (raw / "29ntw7sh4r-5.zip.sha256.json").is_file()  # later downloads are checked


@pytest.mark.parametrize(
    ("limits", "says"),
    [
        ({"max_members": 2}, r"holds 3 members, more than 2"),
        ({"max_unpacked_bytes": 100_000}, r"unpacks to 300,010 bytes, more than 100,000"),
    ],
    ids=["members", "unpacked-size"],
)
def test_an_archive_is_checked_before_extraction(tmp_path: Path, limits: dict, says: str) -> None:
    """Failed before: every member was extracted, however many and however large."""
    www = tmp_path / "www"
    www.mkdir()
    members = {
        "top/metadata.csv": b"x" * 10,
        "top/a.bin": bytes(150_000),
        "top/b.bin": bytes(150_000),
    }
    data = _zip(www / "29ntw7sh4r-5.zip", members)
    raw = tmp_path / "raw"
    with pytest.raises(
        AcquisitionError,
        match=rf"29ntw7sh4r-5.zip {says}.*: not the expected data set, or a zip bomb; it was "
        r"removed",
    ):
        acquire_archive(
            (www / "29ntw7sh4r-5.zip").as_uri(),
            raw,
            sha256=hashlib.sha256(data).hexdigest(),
            marker="metadata.csv",
            schemes=FILE,
            **limits,
        )
    assert not (raw / "29ntw7sh4r-5").exists() and not (raw / "29ntw7sh4r-5.zip").exists()


def test_file_urls_work_when_allowed(tmp_path: Path) -> None:
    """The test-only scheme: the her2st path downloads, verifies and refuses as over https."""
    base = _served(tmp_path, "data/ST-cnts/B4.tsv.gz", b"tampered")
    source = Source(raw_dir=tmp_path / "raw", base_url=base, commit=COMMIT, url_schemes=FILE)
    with pytest.raises(AcquisitionError, match=r"B4.tsv.gz: sha256 .* does not match the recorded"):
        acquire(["B4"], source)
