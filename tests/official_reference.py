"""Deterministic non-trivial weights for the official-output regression test.

`reference_model(cfg)` builds our model with seeded random weights in which every state-dict
entry is non-trivial (FrozenBN statistics, norms and biases included), so any wiring difference
from the official code would show. `scripts/make_official_fixture.py` loads the same state dict
into the official facebookresearch/detr code and records its outputs in tests/data.
"""
import torch

from detr_viz.segmentation import DETRPanoptic


def nontrivial_state(model: torch.nn.Module, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, v in model.state_dict().items():
        v = v.clone()
        backbone_bn = k.startswith("detr.backbone.0.body.") and (".bn" in k or "downsample.1" in k)
        norm = ".norm" in k or ".gn" in k
        if k.endswith("running_var"):
            v = torch.empty_like(v).uniform_(0.5, 2.0, generator=g)
        elif k.endswith("running_mean"):
            v = torch.empty_like(v).normal_(0, 0.2, generator=g)
        elif backbone_bn and k.endswith("weight"):
            v = torch.empty_like(v).uniform_(0.5, 1.2, generator=g)
        elif (backbone_bn or norm) and k.endswith("bias"):
            v = torch.empty_like(v).normal_(0, 0.1, generator=g)
        elif norm and k.endswith("weight"):
            v = torch.empty_like(v).uniform_(0.5, 1.5, generator=g)
        elif k.endswith("bias"):
            v = torch.empty_like(v).normal_(0, 0.05, generator=g)
        elif v.dim() >= 2:
            v = v * torch.empty_like(v).uniform_(0.8, 1.2, generator=g)
        out[k] = v
    return out


def reference_model(cfg, seed: int = 0) -> DETRPanoptic:
    torch.manual_seed(seed)
    model = DETRPanoptic(cfg).eval()
    model.load_state_dict(nontrivial_state(model, seed + 1), strict=True)
    return model
