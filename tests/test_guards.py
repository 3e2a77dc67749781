"""The image guards as wired: `load_image` on non-square inputs (issue 9, item 3).

The decompression-bomb check used to be tested only with square images, so a check computing
`h * h` (or `w * w`) instead of `w * h` passed: an 80 KB PNG of 80,000 x 1,000 pixels was then
decoded in full (+458 MB). Here the check is exercised through the real `load_image` on wide and
tall files whose headers claim more than `MAX_PIXELS`, while either side alone squared stays under
the limit (wide: 1,000^2) or over it (tall: 80,000^2), so both one-sided bugs fail one of them.
80 MP is also below PIL's own bomb warning (~89 MP): our check is the only guard there.
"""
from __future__ import annotations

import functools
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

from detr_viz import images as I
from detr_viz.images import ImageError, load_image

WIDE = (80_000, 1_000)          # 80 MP; h * h = 1 MP, so an `h * h` check lets it through
TALL = (1_000, 80_000)          # 80 MP; w * w = 1 MP, so a `w * w` check lets it through


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@functools.lru_cache(maxsize=4)
def bilevel_png(w: int, h: int) -> bytes:
    """A complete, valid 1-bit PNG of w x h black pixels: ~80 KB for 80 MP (all rows compress alike)."""
    row = b"\x00" + b"\x00" * ((w + 7) // 8)                    # filter byte + packed bits
    ihdr = struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0)         # 1-bit grayscale
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
            + png_chunk(b"IDAT", zlib.compress(row * h, 9)) + png_chunk(b"IEND", b""))


def jpeg_claiming(w: int, h: int) -> bytes:
    """A small real JPEG whose SOF header is rewritten to claim w x h pixels (data stays 8 x 8)."""
    buf = io.BytesIO()
    Image.new("L", (8, 8), 90).save(buf, format="JPEG")
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")                               # baseline frame header
    data[sof + 5: sof + 9] = struct.pack(">HH", h, w)           # height, then width
    return bytes(data)


@pytest.fixture
def decodes(monkeypatch):
    """Records every pixel decode of a file-backed image (ImageFile.load)."""
    calls = []
    real = ImageFile.ImageFile.load

    def spy(im):
        calls.append(im.size)
        return real(im)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    return calls


@pytest.mark.parametrize("size", [WIDE, TALL], ids=["wide", "tall"])
@pytest.mark.parametrize("kind", ["path", "bytes", "file"])
def test_non_square_png_bomb_refused_before_decoding(size, kind, tmp_path, decodes):
    data = bilevel_png(*size)
    assert len(data) < 100_000                                  # the bomb is small on disk
    src = {"bytes": data, "file": io.BytesIO(data)}.get(kind)
    if kind == "path":
        src = tmp_path / "strip.png"
        src.write_bytes(data)
    w, h = size
    with pytest.raises(ImageError, match=rf"{w} x {h} pixels \(80 megapixels\); the limit is 50 megapixels"):
        load_image(src)
    assert decodes == []                                        # refused on the header alone


@pytest.mark.parametrize("size", [(60_000, 1_000), (1_000, 60_000)], ids=["wide", "tall"])
def test_non_square_jpeg_bomb_refused_before_decoding(size, decodes):
    with pytest.raises(ImageError, match="60 megapixels.*limit is 50 megapixels"):
        load_image(jpeg_claiming(*size))
    assert decodes == []


@pytest.mark.parametrize("size", [WIDE, TALL], ids=["wide", "tall"])
def test_non_square_pil_image_refused(size):
    im = Image.new("1", size)                                   # 10 MB in memory, 80 MP
    with pytest.raises(ImageError, match="limit is 50 megapixels"):
        load_image(im)


@pytest.mark.parametrize("size", [(0, 10), (10, 0)])
def test_one_empty_side_is_refused(size):
    with pytest.raises(ImageError, match="empty"):
        load_image(Image.new("RGB", size))


def test_size_check_boundary_is_w_times_h():
    I._check_size(50_000, 1_000)                                # exactly MAX_PIXELS: allowed
    I._check_size(1_000, 50_000)
    for w, h in [(50_001, 1_000), (1_000, 50_001), (I.MAX_PIXELS + 1, 1), (1, I.MAX_PIXELS + 1)]:
        with pytest.raises(ImageError, match="limit is 50 megapixels"):
            I._check_size(w, h)


def test_a_non_square_image_under_the_limit_still_loads(decodes):
    out = load_image(bilevel_png(5_000, 20))                    # long side capped, not refused
    assert out.size == (I.MAX_SIDE, 16) and out.mode == "RGB"
    assert set(decodes) == {(5_000, 20)}                       # the spy sees a real decode
    assert np.asarray(out).max() == 0                           # black stays black
