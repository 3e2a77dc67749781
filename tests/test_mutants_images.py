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
