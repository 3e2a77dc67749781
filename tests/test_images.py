"""Image loading (modes, EXIF, formats, bad files, bombs) and the official preprocessing."""
from __future__ import annotations

import io
import struct
import warnings
import zlib

import numpy as np
import pytest
import torch
from PIL import Image, JpegImagePlugin
from torchvision import transforms as T

from detr_viz import images as I
from detr_viz.images import ImageError, load_image, preprocess, resized_size


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def pixels(src) -> np.ndarray:
    out = load_image(src)
    assert isinstance(out, Image.Image) and out.mode == "RGB"
    return np.asarray(out)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def raw_png(w: int, h: int, bit_depth: int, color_type: int, rows: bytes) -> bytes:
    """A PNG written by hand: lets us claim any size, or use 16-bit RGB."""
    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(rows))
            + png_chunk(b"IEND", b""))


RGB = (np.arange(4 * 6 * 3).reshape(4, 6, 3) * 3).astype(np.uint8)    # (H=4, W=6, 3)


# ---- colour modes --------------------------------------------------------------------------------
@pytest.mark.parametrize("mode, raw", [
    ("I;16", np.array([[0, 32768, 65535]], np.uint16).tobytes()),
    ("I;16B", np.array([[0, 32768, 65535]], ">u2").tobytes()),
    ("I", np.array([[0, 32768, 65535]], np.int32).tobytes()),
])
def test_16_bit_gray_is_scaled_not_clipped(mode, raw):
    im = Image.frombytes(mode, (3, 1), raw)
    assert pixels(im)[0].tolist() == [[0] * 3, [128] * 3, [255] * 3]


def test_16_bit_png_file():
    data = encode(Image.fromarray(np.array([[0, 32768, 65535]], np.uint16)), "PNG")
    assert pixels(data)[0, :, 0].tolist() == [0, 128, 255]


def test_48_bit_rgb_png():
    px = np.array([[[65535, 0, 32768], [0, 65535, 0]]], ">u2")          # (1, 2, 3)
    data = raw_png(2, 1, 16, 2, b"\x00" + px.tobytes())
    out = pixels(data)
    assert out.shape == (1, 2, 3)
    assert np.abs(out.astype(int) - [[[255, 0, 128], [0, 255, 0]]]).max() <= 1


def test_int_and_float_images():
    assert pixels(Image.fromarray(np.array([[0, 128, 255]], np.int32)))[0, :, 0].tolist() == [0, 128, 255]
    assert pixels(Image.fromarray(np.array([[0, 0.5, 1.0]], np.float32)))[0, :, 0].tolist() == [0, 128, 255]
    assert pixels(Image.fromarray(np.array([[-1, 0, 1]], np.float32)))[0, :, 0].tolist() == [0, 128, 255]


def test_rgba_composited_over_white():
    a = np.zeros((1, 3, 4), np.uint8)
    a[0, 0] = (10, 20, 30, 0)        # fully transparent -> white
    a[0, 1] = (255, 0, 0, 255)       # opaque red
    a[0, 2] = (255, 0, 0, 128)       # half red over white
    for src in (Image.fromarray(a, "RGBA"), encode(Image.fromarray(a, "RGBA"), "PNG")):
        out = pixels(src).astype(int)
        assert out[0, 0].tolist() == [255, 255, 255] and out[0, 1].tolist() == [255, 0, 0]
        assert np.abs(out[0, 2] - [255, 127, 127]).max() <= 1


def test_la_and_l():
    la = Image.fromarray(np.array([[[50, 0], [50, 255]]], np.uint8), "LA")
    assert pixels(la).tolist() == [[[255] * 3, [50] * 3]]
    assert pixels(encode(la, "PNG")).tolist() == [[[255] * 3, [50] * 3]]
    assert pixels(Image.fromarray(np.array([[7, 200]], np.uint8))).tolist() == [[[7] * 3, [200] * 3]]
    assert pixels(Image.new("1", (2, 1), 1)).tolist() == [[[255] * 3, [255] * 3]]


def palette_image() -> Image.Image:
    p = Image.new("P", (2, 1))
    p.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 9))
    p.putpixel((0, 0), 1)
    p.putpixel((1, 0), 2)
    return p


def test_palette_with_and_without_transparency():
    p = palette_image()
    assert pixels(encode(p, "PNG")).tolist() == [[[255, 0, 0], [0, 0, 255]]]
    assert pixels(encode(p, "PNG", transparency=1)).tolist() == [[[255, 255, 255], [0, 0, 255]]]
    p.info["transparency"] = 2
    assert pixels(p).tolist() == [[[255, 0, 0], [255, 255, 255]]]


def test_cmyk():
    cmyk = Image.new("CMYK", (2, 2), (0, 255, 255, 0))                   # red
    assert pixels(cmyk)[0, 0].tolist() == [255, 0, 0]
    out = pixels(encode(cmyk, "JPEG", quality=95)).astype(int)
    assert np.abs(out[0, 0] - [255, 0, 0]).max() <= 8


# ---- orientation, frames, formats -----------------------------------------------------------------
def test_exif_orientation_6_rotates():
    a = np.zeros((16, 32, 3), np.uint8)             # landscape: left half red, right half blue
    a[:, :16] = (255, 0, 0)
    a[:, 16:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6                                # "rotate 90 CW to view"
    out = pixels(encode(Image.fromarray(a), "JPEG", exif=exif, quality=95)).astype(int)
    assert out.shape == (32, 16, 3)                 # now portrait
    assert np.abs(out[4, 8] - [255, 0, 0]).max() < 40      # left edge went to the top
    assert np.abs(out[28, 8] - [0, 0, 255]).max() < 40


def test_gif_first_frame():
    frames = [Image.new("RGB", (4, 4), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50)
    assert pixels(data)[0, 0].tolist() == [255, 0, 0]
    tiff = encode(frames[1], "TIFF", save_all=True, append_images=[frames[2]])
    assert pixels(tiff)[0, 0].tolist() == [0, 255, 0]


@pytest.mark.parametrize("fmt, kw", [("PNG", {}), ("BMP", {}), ("TIFF", {}), ("WEBP", {"lossless": True})])
def test_lossless_round_trips(fmt, kw):
    assert np.array_equal(pixels(encode(Image.fromarray(RGB), fmt, **kw)), RGB)


def test_all_input_kinds_agree(tmp_path):
    data = encode(Image.fromarray(RGB), "JPEG", quality=90)
    path = tmp_path / "photo.jpg"
    path.write_bytes(data)
    ref = pixels(data)
    f = io.BytesIO(data)
    f.read()                                        # an already-read upload is read again
    for src in (str(path), path, bytearray(data), f, open(path, "rb"), Image.open(path)):
        assert np.array_equal(pixels(src), ref)
    original = Image.fromarray(RGB)
    assert load_image(original) is not original     # the caller's image is never handed back


# ---- bad input -------------------------------------------------------------------------------------
@pytest.mark.filterwarnings("error")
def test_bad_files_raise_image_error_only(tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("this is not an image\n")
    jpeg = encode(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)), "JPEG")
    png = encode(Image.fromarray(RGB), "PNG")
    bad = {
        "empty": b"", "random": np.random.default_rng(1).bytes(2000), "text": text,
        "truncated jpeg": jpeg[: len(jpeg) // 2], "truncated png": png[: len(png) - 30],
        "header only": jpeg[:20], "missing file": tmp_path / "nope.png", "folder": tmp_path,
    }
    for what, src in bad.items():
        with pytest.raises(ImageError) as ei:
            load_image(src)
        assert type(ei.value) is ImageError, what
    with pytest.raises(ImageError, match="empty"):
        load_image(b"")
    with pytest.raises(ImageError, match="not an image we can read.*JPEG, PNG, WebP"):
        load_image(text)
    with pytest.raises(ImageError, match="truncated"):
        load_image(jpeg[: len(jpeg) // 2])


def test_zero_size_image():
    with pytest.raises(ImageError, match="empty"):
        load_image(Image.new("RGB", (0, 0)))


def test_wrong_argument_type():
    with pytest.raises(TypeError):
        load_image(12345)


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("side", [8000, 10_000, 30_000])   # our limit, PIL's warning, PIL's error
def test_decompression_bomb_refused_before_decoding(side):
    data = raw_png(side, side, 1, 0, b"\x00" * 16)          # a few bytes claiming side^2 pixels
    filters = list(warnings.filters)
    with pytest.raises(ImageError, match="limit is 50 megapixels"):     # before decoding: tests/test_guards.py
        load_image(data)
    assert warnings.filters == filters


def test_long_side_is_capped(monkeypatch):
    out = load_image(encode(Image.new("RGB", (5000, 100), (10, 20, 30)), "PNG"))
    assert out.size == (I.MAX_SIDE, 82)
    drafts = []
    real_draft = JpegImagePlugin.JpegImageFile.draft
    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft",
                        lambda im, mode, size: drafts.append(size) or real_draft(im, mode, size))
    jpeg = encode(Image.new("RGB", (8192, 1024), (200, 100, 50)), "JPEG")
    out = load_image(jpeg)
    assert out.size == (4096, 512) and drafts == [(4096, 512)]     # decoded at 1/2 scale
    assert np.abs(np.asarray(out)[100, 100].astype(int) - [200, 100, 50]).max() < 6


# ---- preprocessing ----------------------------------------------------------------------------------
@pytest.mark.parametrize("w, h, expected", [
    (640, 480, (800, 1066)),
    (480, 640, (1066, 800)),
    (640, 427, (800, 1199)),
    # 2000/500*800 = 3200 > 1333: short side int(round(1333*500/2000)) = 333, long int(333*4) = 1332
    (2000, 500, (333, 1332)),
    (1000, 800, (800, 1000)),               # short side already 800: unchanged
    (1333, 800, (800, 1333)),
])
def test_resized_size(w, h, expected):
    assert resized_size(w, h) == expected


def test_resized_size_of_a_thin_strip_keeps_one_pixel():
    # 1333 * 1 / 4000 rounds to 0: the official code would make an empty input
    assert resized_size(4000, 1) == (1, 1333)
    assert resized_size(1, 4000) == (1333, 1)
    assert resized_size(4000, 1, max_size=None) == (800, 3_200_000)    # no cap asked for: as the formula says


def test_resized_size_without_cap_matches_torchvision_resize():
    for w, h in [(640, 480), (500, 375), (640, 427), (2000, 500)]:
        out = T.Resize(800)(Image.new("RGB", (w, h)))
        assert resized_size(w, h, max_size=None) == (out.height, out.width)


def test_preprocess_matches_official_transform():
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 64, 3), np.uint8))
    pre = preprocess(img)
    assert pre.tensor.shape == (1, 3, 800, 1066) and pre.tensor.dtype == torch.float32
    assert pre.original_size == (48, 64) and pre.processed_size == (800, 1066)
    assert pre.resized_image.size == (1066, 800)
    official = T.Compose([T.Resize(800), T.ToTensor(), T.Normalize(I.MEAN, I.STD)])(img)
    assert torch.equal(pre.tensor[0], official)       # no cap needed at 4:3
    back = I.denormalize(pre.tensor)
    assert back.dtype == np.uint8 and back.shape == (800, 1066, 3)
    assert np.abs(back.astype(int) - np.asarray(pre.resized_image).astype(int)).max() <= 1
    assert np.array_equal(I.denormalize(pre.tensor[0]), back)


def test_preprocess_caps_long_side_and_converts_mode():
    pre = preprocess(Image.new("L", (400, 100), 128))
    assert pre.processed_size == resized_size(400, 100) == (333, 1332)
    assert pre.tensor.shape == (1, 3, 333, 1332)


def test_load_image_from_numpy_arrays():
    rgb = np.random.default_rng(1).integers(0, 256, (20, 30, 3), np.uint8)
    assert np.array_equal(np.asarray(load_image(rgb)), rgb)
    gray = load_image(np.full((20, 30), 0.5))                        # floats 0..1
    assert gray.mode == "RGB" and gray.size == (30, 20) and gray.getpixel((0, 0)) == (128, 128, 128)
    rgba = np.zeros((4, 4, 4), np.uint8)                             # fully transparent: white
    assert load_image(rgba).getpixel((0, 0)) == (255, 255, 255)
    for bad in (np.zeros((4, 4, 2)), np.zeros((0, 4, 3), np.uint8), np.array([["x"]])):
        with pytest.raises(ImageError, match="not a picture"):
            load_image(bad)
