"""Three traces shared by test_quiz.py and test_curriculum.py (built once per test session):
an R50-sized and a DC5-sized random model on a small input, and the shipped toyworld model on a toy
scene. The R50 one is pushed to keep queries (a stuff merge and a drop); the DC5 one keeps none."""
from functools import cache

import numpy as np
from conftest import REPO
from PIL import Image

import detr_viz
from detr_viz.config import R50_DC5_PANOPTIC, R50_PANOPTIC
from detr_viz.testing import make_confident, tiny_model

TOY_SCENE = REPO / "assets" / "toyworld" / "scene1.png"
MODELS = ("r50", "dc5", "toyworld")


def photo() -> Image.Image:
    return Image.fromarray((np.random.default_rng(0).random((96, 128, 3)) * 255).astype(np.uint8))


@cache
def get(name: str):
    if name == "r50":
        return detr_viz.trace(make_confident(tiny_model(R50_PANOPTIC)), photo(), size=64, max_size=96)
    if name == "dc5":
        return detr_viz.trace(tiny_model(R50_DC5_PANOPTIC), photo(), size=64, max_size=96)
    return detr_viz.trace(detr_viz.create_model("toyworld", weights="official"), TOY_SCENE)


def stride(t) -> int:
    """The transformer grid's stride, read from the shapes: network input height / memory height."""
    return 2 ** round(np.log2(t["input"].shape[-2] / t["memory"].shape[-2]))
