"""Opening untrusted images: Pillow's decompression-bomb guard stays on, with a limit a
real slide fits under, for the image being opened only (issue 17)."""

from __future__ import annotations

import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from brstnet.st.errors import DataError
from brstnet.st.images import MAX_SLIDE_PIXELS, read_image
from brstnet.st.slides import image_size


def _png_claiming(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims ``width`` x ``height`` pixels (a decompression bomb)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    body = zlib.compress(b"\x00" * 64)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")
    )
    return path


def test_importing_brstnet_leaves_pillows_guard_on() -> None:
    """Failed before: brstnet.st.slides set Image.MAX_IMAGE_PIXELS = None for the whole
    process, `brstnet predict` on slides from anywhere included."""
    code = (
        "import brstnet.command, brstnet.st.slides, brstnet.inference.slide; "
        "from PIL import Image; print(Image.MAX_IMAGE_PIXELS)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "89478485"  # Pillow's own default


def test_a_decompression_bomb_is_refused_before_it_is_decoded(tmp_path: Path) -> None:
    """Failed before: with the guard off, the header's size was believed."""
    bomb = _png_claiming(tmp_path / "bomb.png", 60_000, 60_000)
    message = (
        rf"section S1: image .*bomb.png is larger than brstnet decodes \({MAX_SLIDE_PIXELS:,} "
        r"pixels; Image size \(3600000000 pixels\) exceeds .*\): a decompression bomb, or a "
        r"whole slide to save as a tiled pyramidal TIFF \(read by regions\)"
    )
    with pytest.raises(DataError, match=message):
        image_size(bomb, "S1")
    with pytest.raises(DataError, match=message):
        read_image(bomb, "S1")


def _jpeg_claiming(path: Path, width: int, height: int) -> Path:
    """A small JPEG whose frame header (SOF0) claims ``width`` x ``height`` pixels."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), "white").save(buffer, format="JPEG")
    data = bytearray(buffer.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    path.write_bytes(bytes(data))
    return path


def test_a_jpeg_bomb_is_refused_whichever_decoder_reads_it(tmp_path: Path) -> None:
    """JPEGs are decoded through imagecodecs, outside Pillow: the header is checked first."""
    bomb = _jpeg_claiming(tmp_path / "bomb.jpg", 60_000, 60_000)
    with pytest.raises(DataError, match=r"bomb.jpg is larger than brstnet decodes"):
        read_image(bomb, "S1")
    with pytest.raises(DataError, match=r"bomb.jpg is larger than brstnet decodes"):
        image_size(bomb, "S1")


def test_a_real_slide_size_is_within_the_limit(tmp_path: Path) -> None:
    """her2st's images are ~9,300 x 9,900 px (92 Mpx), over Pillow's default warning."""
    assert MAX_SLIDE_PIXELS >= 10 * 9_300 * 9_900
    assert image_size(_png_claiming(tmp_path / "big.png", 9_300, 9_900), "S1") == (9_300, 9_900)


def test_a_truncated_tiff_fails_when_its_size_is_read(tmp_path: Path) -> None:
    """Failed before: only the header was read; the missing tiles failed at patch cutting."""
    import numpy as np

    from tests.layouts import write_pyramid

    path = tmp_path / "slide.tif"
    rng = np.random.default_rng(0)
    write_pyramid(path, rng.integers(0, 255, (1200, 1600, 3), dtype=np.uint8), 0.5)
    assert image_size(path, "S1") == (1600, 1200)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"section S1: slide .*slide.tif is truncated or corrupt"):
        image_size(path, "S1")


@pytest.mark.parametrize("progressive", [False, True])
def test_a_jpeg_cut_anywhere_after_its_header_is_incomplete(
    tmp_path: Path, progressive: bool
) -> None:
    """Sections are read without decoding their images (patches decode each once); a
    JPEG cut short still fails when sections are read, and one with bytes appended after
    its end marker (as some writers add) still reads."""
    import numpy as np
    from PIL import Image

    from brstnet.st.images import jpeg_is_complete

    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)
    path = tmp_path / "HE_S1.jpg"
    Image.fromarray(image).save(path, quality=90, progressive=progressive)
    data = path.read_bytes()
    assert jpeg_is_complete(data)
    assert image_size(path, "S1") == (128, 96)
    path.write_bytes(data + b"\x00" * 16)
    assert image_size(path, "S1") == (128, 96)

    header = data.find(b"\xff\xda")  # the first scan starts here
    for cut in np.linspace(header + 16, len(data) - 1, 12).astype(int):  # past its header
        assert not jpeg_is_complete(data[:cut]), cut
        path.write_bytes(data[:cut])
        with pytest.raises(
            DataError, match=r"section S1: image .*HE_S1.jpg is truncated or corrupt"
        ):
            image_size(path, "S1")


def test_jpegs_are_decoded_into_reused_memory(tmp_path: Path) -> None:
    """A worker decodes one section's image after another into one buffer (fresh memory is
    slow to touch the first time); the pixels are Pillow's."""
    import numpy as np
    from PIL import Image

    from brstnet.st.images import ImageBuffer
    from brstnet.st.slides import open_slide

    rng = np.random.default_rng(5)
    paths = []
    for k, (height, width) in enumerate([(300, 400), (200, 250), (500, 420)]):
        path = tmp_path / f"HE_{k}.jpg"
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    buffer = ImageBuffer()
    first = open_slide(paths[0], "S0", buffer=buffer).image
    np.testing.assert_array_equal(first, np.asarray(Image.open(paths[0]).convert("RGB")))
    second = open_slide(paths[1], "S1", buffer=buffer).image  # smaller: the same memory
    assert np.shares_memory(first, second)
    np.testing.assert_array_equal(second, np.asarray(Image.open(paths[1]).convert("RGB")))
    third = open_slide(paths[2], "S2", buffer=buffer).image  # larger: a new block
    assert not np.shares_memory(third, second) and third.shape == (500, 420, 3)
    np.testing.assert_array_equal(third, np.asarray(Image.open(paths[2]).convert("RGB")))
    buffer.release()
    np.testing.assert_array_equal(third, np.asarray(Image.open(paths[2]).convert("RGB")))


def test_a_jpeg_with_damaged_image_data_is_refused_naming_the_file(tmp_path: Path) -> None:
    """Failed before: damaged scan data behind a good header decoded without a word into
    garbled pixels (102 of C3's 177 patches, 64 grey levels off on average)."""
    import numpy as np
    from PIL import Image

    from brstnet.st.images import read_image
    from brstnet.st.slides import open_slide

    image = np.zeros((256, 320, 3), np.uint8)
    image[:] = np.linspace(0, 255, 320)[None, :, None].astype(np.uint8)
    path = tmp_path / "HE_S1.jpg"
    Image.fromarray(image).save(path, quality=90)
    good = read_image(path, "S1")
    np.testing.assert_array_equal(good, np.asarray(Image.open(path).convert("RGB")))
    data = bytearray(path.read_bytes())
    for i in range(len(data) // 2, len(data) // 2 + 200, 7):  # inside the scan, not the end
        data[i] = (data[i] + 97) % 256
    path.write_bytes(bytes(data))
    assert image_size(path, "S1") == (320, 256)  # the header still reads
    garbled = np.asarray(Image.open(path).convert("RGB"))  # what Pillow returns, silently
    assert np.abs(garbled.astype(int) - good).mean() > 10
    for read in (lambda: read_image(path, "S1"), lambda: open_slide(path, "S1").image):
        with pytest.raises(DataError) as err:
            read()
        assert str(err.value).startswith(
            f"section S1: image {path} is damaged: its header reads but its image data does "
            "not (libjpeg: Corrupt JPEG data"
        )
        assert str(err.value).endswith("the pixels would be garbled: replace the file")
