"""Acquisition: local copy, HTTPS-style download (served on 127.0.0.1), resume, checksums."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from brstnet.st import her2st
from brstnet.st.acquisition import Source, sha256_of
from brstnet.st.errors import AcquisitionError
from brstnet.st.her2st import acquire, known_files

COMMIT = known_files()["commit"]
#: The test server on 127.0.0.1 speaks plain http; brstnet fetches https only unless told.
LOCAL = ("http",)


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with single-range support (what raw file hosts offer)."""

    requests: list[tuple[str, str | None]] = []

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:
        path = Path(self.translate_path(self.path))
        RangeHandler.requests.append((self.path, self.headers.get("Range")))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = 0
        if self.headers.get("Range"):
            start = int(self.headers["Range"].removeprefix("bytes=").split("-")[0])
            if start >= len(data):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])


@pytest.fixture
def server(tmp_path: Path, her2st_dir: Path) -> Iterator[tuple[str, Path]]:
    """Serve a copy of the real her2st files at /<commit>/... on 127.0.0.1."""
    root = tmp_path / "www"
    served = root / COMMIT
    for rel in (
        "data/ST-cnts/B4.tsv.gz",
        "data/ST-spotfiles/B4_selection.tsv",
        "data/ST-imgs/B/B4/BT10737_D2_HE.jpg",
    ):
        (served / rel).parent.mkdir(parents=True, exist_ok=True)
        (served / rel).write_bytes((her2st_dir / rel).read_bytes())
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), partial(RangeHandler, directory=str(root))
    )
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    RangeHandler.requests = []
    yield f"http://127.0.0.1:{httpd.server_address[1]}/{{commit}}", served
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.real_data
def test_download_fetches_exactly_the_needed_files_and_verifies_them(
    tmp_path: Path, server
) -> None:
    url, _ = server
    raw = tmp_path / "raw"
    manifest = acquire(
        ["B4"], Source(raw_dir=raw, local_dir=None, base_url=url, commit=COMMIT, url_schemes=LOCAL)
    )
    assert manifest["obtained"] == {"present": 0, "copied": 0, "downloaded": 3}
    assert manifest["sections"]["B4"]["image"] == "data/ST-imgs/B/B4/BT10737_D2_HE.jpg"
    sums = known_files()["files"]
    for rel in manifest["sections"]["B4"].values():
        assert sha256_of(raw / rel) == sums[rel]
    assert sorted(p for p, _ in RangeHandler.requests) == sorted(
        f"/{COMMIT}/{r}" for r in manifest["sections"]["B4"].values()
    )
    assert not list(raw.rglob("*.part"))
    # a second run finds everything in place and downloads nothing
    again = acquire(
        ["B4"], Source(raw_dir=raw, local_dir=None, base_url=url, commit=COMMIT, url_schemes=LOCAL)
    )
    assert again["obtained"] == {"present": 3, "copied": 0, "downloaded": 0}


@pytest.mark.real_data
def test_download_resumes_a_partial_file(tmp_path: Path, server) -> None:
    url, served = server
    raw = tmp_path / "raw"
    rel = "data/ST-imgs/B/B4/BT10737_D2_HE.jpg"
    data = (served / rel).read_bytes()
    part = raw / (rel + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(data[: len(data) // 3])
    acquire(
        ["B4"], Source(raw_dir=raw, local_dir=None, base_url=url, commit=COMMIT, url_schemes=LOCAL)
    )
    assert (raw / rel).read_bytes() == data
    assert (f"/{COMMIT}/{rel}", f"bytes={len(data) // 3}-") in RangeHandler.requests


@pytest.mark.real_data
def test_bad_checksum_is_refused_and_nothing_is_left(tmp_path: Path, server) -> None:
    url, served = server
    rel = "data/ST-cnts/B4.tsv.gz"
    (served / rel).write_bytes(b"tampered")
    raw = tmp_path / "raw"
    with pytest.raises(AcquisitionError, match=r"B4.tsv.gz: sha256 .* does not match the recorded"):
        acquire(
            ["B4"],
            Source(raw_dir=raw, local_dir=None, base_url=url, commit=COMMIT, url_schemes=LOCAL),
        )
    assert not (raw / rel).exists() and not (raw / (rel + ".part")).exists()


def test_offline_without_a_local_copy_says_what_to_do(tmp_path: Path) -> None:
    source = Source(
        raw_dir=tmp_path / "raw",
        local_dir=tmp_path / "absent",
        base_url="http://127.0.0.1:9/{commit}",
        commit=COMMIT,
        timeout_s=2,
        url_schemes=LOCAL,
    )
    with pytest.raises(AcquisitionError, match=r"Offline\? Point data_processing.source.local_dir"):
        acquire(["B4"], source)
    with pytest.raises(AcquisitionError, match="no her2st source"):
        acquire(
            ["B4"], Source(raw_dir=tmp_path / "raw", local_dir=None, base_url=None, commit=COMMIT)
        )


@pytest.mark.real_data
def test_local_copy_is_copied_and_checked(tmp_path: Path, her2st_dir: Path) -> None:
    raw = tmp_path / "raw"
    manifest = acquire(
        ["B4", "C2"], Source(raw_dir=raw, local_dir=her2st_dir, base_url=None, commit=COMMIT)
    )
    assert manifest["obtained"]["copied"] == 6
    for section in ("B4", "C2"):
        for rel in manifest["sections"][section].values():
            assert (raw / rel).read_bytes() == (her2st_dir / rel).read_bytes()


def test_a_local_copy_that_differs_from_the_published_files_is_refused(
    tmp_path: Path, tiny_her2st: Path
) -> None:
    with pytest.raises(
        AcquisitionError, match=r"A1.tsv.gz: sha256 .* does not match the recorded"
    ) as err:
        acquire(
            ["A1"],
            Source(raw_dir=tmp_path / "raw", local_dir=tiny_her2st, base_url=None, commit=COMMIT),
        )
    assert not list((tmp_path / "raw").rglob("*.tsv.gz*"))
    # failed before: "the file was removed, run again", though the local file is untouched
    local = tiny_her2st / "data/ST-cnts/A1.tsv.gz"
    assert str(err.value).endswith(
        f"replace {local} with the published file, or remove it to download it"
    )
    assert local.is_file()


def test_a_file_missing_from_the_local_copy_is_named_when_its_download_fails(
    tmp_path: Path, tiny_her2st: Path
) -> None:
    """Failed before: offline, it said to point local_dir at a local copy, which it was."""
    (tiny_her2st / "data/ST-cnts/A1.tsv.gz").unlink()
    source = Source(
        raw_dir=tmp_path / "raw",
        local_dir=tiny_her2st,
        base_url="http://127.0.0.1:9/{commit}",  # nothing listens there: offline
        commit=COMMIT,
        timeout_s=2,
        url_schemes=LOCAL,
    )
    with pytest.raises(AcquisitionError) as err:
        acquire(["A1"], source)
    message = str(err.value)
    assert message.startswith(
        f"section A1: data/ST-cnts/A1.tsv.gz is missing from the local copy {tiny_her2st} "
        "(data_processing.source.local_dir), and downloading it failed: download of "
    )
    assert message.endswith(
        f"Copy the file to {tiny_her2st / 'data/ST-cnts/A1.tsv.gz'}, or run again online"
    )


@pytest.mark.real_data
def test_section_without_a_known_image(tmp_path: Path, her2st_dir: Path, caplog) -> None:
    # a local folder may hold images brstnet has no record of: copied, with a warning
    local = tmp_path / "local"
    for rel in ("data/ST-cnts/A1.tsv.gz", "data/ST-spotfiles/A1_selection.tsv"):
        (local / rel).parent.mkdir(parents=True, exist_ok=True)
        (local / rel).write_bytes((her2st_dir / rel).read_bytes())
    (local / "data/ST-imgs/A/A1").mkdir(parents=True)
    (local / "data/ST-imgs/A/A1/HE_A1.jpg").write_bytes(b"jpeg bytes")
    manifest = acquire(
        ["A1"], Source(raw_dir=tmp_path / "raw", local_dir=local, base_url=None, commit=COMMIT)
    )
    assert manifest["sections"]["A1"]["image"] == "data/ST-imgs/A/A1/HE_A1.jpg"
    assert "HE_A1.jpg has no recorded sha256 and was not verified" in caplog.text
    with pytest.raises(
        AcquisitionError, match=r"section A2: the file name of its H&E image is not recorded"
    ):
        her2st.section_files("A2", None)


@pytest.mark.real_data
def test_he2020_zip_is_downloaded_resumed_checked_and_unpacked(
    tmp_path: Path, her2st_dir: Path
) -> None:
    import hashlib
    import zipfile

    from brstnet.st.archives import acquire_archive
    from tests.layouts import write_he2020

    layout = tmp_path / "layout" / "he2020_v5"
    write_he2020(layout, her2st_dir, {"C2": ("BC23902", "D2")})
    www = tmp_path / "www"
    www.mkdir()
    with zipfile.ZipFile(www / "29ntw7sh4r-5.zip", "w") as zipped:
        for path in sorted(layout.rglob("*")):
            zipped.write(path, path.relative_to(layout.parent))
    data = (www / "29ntw7sh4r-5.zip").read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), partial(RangeHandler, directory=str(www))
    )
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/29ntw7sh4r-5.zip"
    raw = tmp_path / "raw"
    try:
        with pytest.raises(AcquisitionError, match="does not match the recorded"):
            acquire_archive(url, raw, sha256="0" * 64, marker="metadata.csv", schemes=LOCAL)
        raw.mkdir(exist_ok=True)
        (raw / "29ntw7sh4r-5.zip.part").write_bytes(
            data[: len(data) // 2]
        )  # an interrupted download
        RangeHandler.requests = []
        root = acquire_archive(url, raw, sha256=digest, marker="metadata.csv", schemes=LOCAL)
        assert RangeHandler.requests == [("/29ntw7sh4r-5.zip", f"bytes={len(data) // 2}-")]
        assert root == raw / "29ntw7sh4r-5" / "he2020_v5" and (root / "metadata.csv").is_file()
        assert (
            acquire_archive(url, raw, sha256=digest, marker="metadata.csv", schemes=LOCAL) == root
        )  # unpacked once
    finally:
        httpd.shutdown()
        httpd.server_close()
