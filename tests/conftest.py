"""Shared fixtures: tiny model configs so the whole suite runs in minutes on 2 CPU cores."""
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from detr_viz.testing import CONFIDENT, TINY, UNSURE, make_confident, tiny_model  # noqa: F401

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).resolve().parents[1]

@pytest.fixture(scope="session")
def tiny():
    return tiny_model()


@pytest.fixture(scope="session")
def tiny_confident():
    return confident_model()


def confident_model():
    return make_confident(tiny_model(seed=1))


def png_bytes(array: np.ndarray, mode=None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="session")
def photo_bytes():
    rng = np.random.default_rng(0)
    img = (rng.random((120, 160, 3)) * 255).astype(np.uint8)
    return png_bytes(img)
