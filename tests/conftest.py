"""Shared fixtures: tiny model configs so the whole suite runs in minutes on 2 CPU cores."""
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from detr_viz.config import DETRConfig
from detr_viz.segmentation import DETRPanoptic

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).resolve().parents[1]

# Smallest config the architecture allows (mask-head widths must be multiples of 8).
TINY = DETRConfig(backbone="resnet18", hidden_dim=128, nheads=8, enc_layers=1, dec_layers=2,
                  dim_feedforward=128, num_queries=10)


def tiny_model(cfg: DETRConfig = TINY, seed: int = 0) -> DETRPanoptic:
    torch.manual_seed(seed)
    return DETRPanoptic(cfg).eval()


@pytest.fixture(scope="session")
def tiny():
    return tiny_model()


@pytest.fixture(scope="session")
def tiny_confident():
    return confident_model()


# query -> class forced by the confident model: two persons (things), tree-merged (stuff) twice
# (a duplicate the stuff merge folds), and sky-other-merged (stuff).
CONFIDENT = {0: 1, 3: 1, 4: 184, 6: 184, 8: 187}
UNSURE = {1: 1}     # a person at about 0.6: kept at threshold 0.5, not at 0.85


def confident_model():
    """A tiny model whose class logits are pushed (by a hook on class_embed) so that the queries of
    CONFIDENT pass a 0.85 threshold with a known class, whatever the image."""
    m = tiny_model(seed=1)

    def push(module, args, out):                  # out: (L, B, N, C+1)
        out = out.clone()
        for q, label in CONFIDENT.items():
            out[..., q, label] += 12.0
        for q, label in UNSURE.items():
            out[..., q, label] += 6.0
        return out

    m.detr.class_embed.register_forward_hook(push)
    return m


def png_bytes(array: np.ndarray, mode=None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="session")
def photo_bytes():
    rng = np.random.default_rng(0)
    img = (rng.random((120, 160, 3)) * 255).astype(np.uint8)
    return png_bytes(img)
