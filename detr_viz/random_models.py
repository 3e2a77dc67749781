"""Models with random weights: the app's `tiny-random` (tests, no weights on disk) and `r50-random`
(benchmarks: the official R50 sizes). Their pictures mean nothing; a hook on the class head makes a
few queries behave as a trained model's do, whatever the image:

- CONFIDENT queries pass a 0.85 threshold with a known class (things, and stuff twice, so that the
  stuff merge has a duplicate to fold);
- UNSURE queries reach about 0.6 (kept at threshold 0.5, not at 0.85);
- NO_OBJECT queries predict "no object" confidently, as most queries of a trained model do;
- AT_HALF queries have a real-class score of exactly 0.5 (two real classes tie, the rest is 0), so
  a threshold of 0.5 sits exactly on them: the strict '>' of the keep rule leaves them out.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .config import R50_PANOPTIC, DETRConfig
from .segmentation import DETRPanoptic

# Smallest config the architecture allows (mask-head widths must be multiples of 8).
TINY = DETRConfig(backbone="resnet18", hidden_dim=128, nheads=8, enc_layers=1, dec_layers=2,
                  dim_feedforward=128, num_queries=10)

# query -> class forced by `make_confident`: two persons (things), tree-merged (stuff) twice
# (a duplicate the stuff merge folds), and sky-other-merged (stuff).
CONFIDENT = {0: 1, 3: 1, 4: 184, 6: 184, 8: 187}
UNSURE = {1: 1}             # a person at about 0.6: kept at threshold 0.5, not at 0.85
NO_OBJECT = (2, 5)          # "no object" with confidence
AT_HALF = {9: (1, 2)}       # person and bicycle tie at exactly 0.5 (argmax: the first, person)


def tiny_model(cfg: DETRConfig = TINY, seed: int = 0) -> DETRPanoptic:
    torch.manual_seed(seed)
    return DETRPanoptic(cfg).eval()


def _push(module, args, out: torch.Tensor) -> torch.Tensor:
    """Forward hook on class_embed: out (L, B, N, C+1) -> the same with the queries above forced."""
    out = out.clone()
    for q, label in CONFIDENT.items():
        out[..., q, label] += 12.0
    for q, label in UNSURE.items():
        out[..., q, label] += 6.0
    for q in NO_OBJECT:
        out[..., q, -1] += 12.0
    for q, labels in AT_HALF.items():
        out[..., q, :] = -1e4                   # exp underflows to exactly 0
        out[..., q, list(labels)] = 0.0         # two exact 1s: probabilities exactly 0.5, 0.5
    return out


def make_confident(model: DETRPanoptic) -> DETRPanoptic:
    """Add the hook that forces CONFIDENT, UNSURE, NO_OBJECT and AT_HALF (see the module doc)."""
    model.detr.class_embed.register_forward_hook(_push)
    return model


@dataclass(frozen=True)
class RandomModel:
    description: str
    build: Callable[[], DETRPanoptic]      # a fresh model on the CPU, hook installed


RANDOM_MODELS = {
    "tiny-random": RandomModel("tiny random model (tests only: meaningless pictures)",
                               lambda: make_confident(tiny_model(seed=1))),
    "r50-random": RandomModel("R50 panoptic with random weights (benchmarks only: meaningless pictures)",
                              lambda: make_confident(tiny_model(R50_PANOPTIC, seed=0))),
}


def build_random_model(key: str) -> DETRPanoptic:
    """The random model named `key` (a key of RANDOM_MODELS), on the CPU."""
    if key not in RANDOM_MODELS:
        raise KeyError(f"unknown random model {key!r}; choose one of {', '.join(RANDOM_MODELS)}")
    return RANDOM_MODELS[key].build()
