"""Tests that kill the mutants of detr_viz/images.py that survived the rest of the suite.

Each test names the behaviour it pins; docs/testing.md lists the mutants (scripts/mutation.sh images).
"""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from detr_viz import images as I
from detr_viz.images import ImageError, load_image

TRUNCATED = ("The image file is incomplete (truncated): it may not have finished uploading or downloading. "
             "Please upload it again or use another image.")


def gray(src) -> list:
    """The first channel of the loaded image, as a list of rows (the image is gray: R = G = B)."""
    a = np.asarray(load_image(src))                              # (H, W, 3)
    assert (a == a[..., :1]).all()
    return a[..., 0].tolist()


# ---- decoder failures become one of two messages ---------------------------------------------------
@pytest.mark.parametrize("error", [
    EOFError(),
    OSError("image file is truncated (3 bytes not processed)"),
    OSError("Truncated File Read"),
    OSError("broken data stream when reading image file"),
])
def test_truncation_messages(error):
    assert str(I._unreadable(error)) == TRUNCATED


@pytest.mark.parametrize("error, shown", [(ValueError("bad header"), "bad header"), (ValueError(), "ValueError"),
                                          (OSError("Broken Data Stream"), "Broken Data Stream")])
def test_other_decoder_errors_name_the_cause_and_the_formats(error, shown):
    assert str(I._unreadable(error)) == (f"This file is not an image we can read ({shown}). "
                                         "Please upload a JPEG, PNG, WebP, BMP, TIFF or GIF.")


# ---- numpy arrays ------------------------------------------------------------------------------------
def test_single_channel_array_is_gray():
    a = np.array([[[7], [8], [9]], [[10], [11], [12]]], np.uint8)            # (H=2, W=3, 1)
    assert gray(a) == [[7, 8, 9], [10, 11, 12]]


def test_bool_array_is_black_and_white():
    assert gray(np.array([[True, False], [False, True]])) == [[255, 0], [0, 255]]


def test_float_array_is_clipped_to_0_1_and_rounded():
    a = np.array([[-0.5, 0.0, 0.2, 0.5, 1.0, 1.5, 2.0, np.nan]])
    assert gray(a) == [[0, 0, 51, 128, 255, 255, 255, 0]]


def test_int_array_is_read_as_0_1():
    assert gray(np.array([[0, 1, 3, -2]], np.int16)) == [[0, 255, 255, 0]]


@pytest.mark.parametrize("a", [np.array([[1 + 0j, 0j]]), np.array([[0.5]], np.complex64)])
def test_complex_array_is_refused(a):
    with pytest.raises(ImageError) as e:
        load_image(a)
    assert str(e.value) == (f"An array of {a.dtype} values is not a picture: give uint8 0..255 or floats 0..1.")


def test_wrong_shape_message():
    with pytest.raises(ImageError) as e:
        load_image(np.zeros((4, 4, 2)))
    assert str(e.value) == ("An array of shape (4, 4, 2) is not a picture: give H x W, H x W x 3 "
                            "or H x W x 4 values.")


# ---- float images (mode F) with non-finite values ------------------------------------------------------
def test_float_image_non_finite_values_count_as_zero():
    im = Image.fromarray(np.array([[np.nan, np.inf, -np.inf, 0.5]], np.float32))   # mode F
    assert gray(im) == [[0, 0, 0, 128]]


# ---- integer and float images: which range rule applies ---------------------------------------------------
@pytest.mark.parametrize("mode, values, expected", [
    ("I;16", [0, 25_700], [0, 100]),          # 16-bit: /257 even when the values do not span 0..65535
    ("I", [0, 256], [0, 1]),                  # 256 is past 8 bits: the 16-bit rule, not "kept as is"
    ("I", [0, 1_000], [0, 4]),                # 16-bit rule from 0, not a min..max stretch
    ("I", [257, 65_535], [1, 255]),           # 65535 is still 16-bit
    ("I", [1_000, 65_536], [0, 255]),         # past 16 bits: stretched min..max
    ("F", [0.0, 1.5], [0, 2]),                # floats past 1 but within 255: kept as is
])
def test_range_rules_of_int_and_float_images(mode, values, expected):
    dtype = {"I;16": np.uint16, "I": np.int32, "F": np.float32}[mode]
    im = Image.frombytes(mode, (len(values), 1), np.array([values], dtype).tobytes())
    assert gray(im) == [expected]


def test_empty_int_image_converts_without_error():
    out = I.to_rgb(Image.new("I;16", (0, 0)))
    assert out.mode == "RGB" and out.size == (0, 0)


# ---- the long-side cap, on tall and one-pixel images ------------------------------------------------------
@pytest.mark.parametrize("size, capped", [((100, 5_000), (82, I.MAX_SIDE)),        # tall: the height is capped
                                          ((5_000, 1), (I.MAX_SIDE, 1)),          # a strip keeps its 1 px
                                          ((1, 5_000), (1, I.MAX_SIDE))])
def test_long_side_cap_of_tall_and_thin_images(size, capped):
    assert load_image(Image.new("L", size, 77)).size == capped


def test_long_side_cap_uses_lanczos():
    src = Image.fromarray(np.random.default_rng(0).integers(0, 256, (100, 5_000, 3), np.uint8))
    expected = src.resize((I.MAX_SIDE, 82), Image.Resampling.LANCZOS, reducing_gap=3.0)
    assert np.array_equal(np.asarray(load_image(src)), np.asarray(expected))
    bicubic = src.resize((I.MAX_SIDE, 82), Image.Resampling.BICUBIC, reducing_gap=3.0)
    assert not np.array_equal(np.asarray(expected), np.asarray(bicubic))     # the test can tell them apart


def test_float_array_without_0_or_1_is_rounded_half_up():
    # stays uint8 all the way: as a float image, 51.5 and 153.5 would be rounded half to even
    assert gray(np.array([[0.2, 0.6]])) == [[51, 153]]
