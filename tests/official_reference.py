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
    return _sharpen(out, model.config)


def _sharpen(state: dict, cfg) -> dict:
    """Make each query's mask its own: with plain random weights the M attention maps entering the
    mask head are ~1/(M hw) each and every query's mask is nearly the same, so one query would win
    every pixel. Peakier box attention and a larger weight on the maps in lay1 give each query its own
    region."""
    d = cfg.hidden_dim
    for name in ("bbox_attention.q_linear.weight", "bbox_attention.k_linear.weight"):
        state[name] = state[name] * 3.0
    lay1 = state["mask_head.lay1.weight"].clone()              # (d+M, d+M, 3, 3): inputs d features, M maps
    lay1[:, d:] *= 300.0
    state["mask_head.lay1.weight"] = lay1
    for i in range(cfg.dec_layers):                            # peakier cross-attention: queries differ
        name = f"detr.transformer.decoder.layers.{i}.multihead_attn.in_proj_weight"
        w = state[name].clone()                                # (3d, d): q, k, v projections
        w[:2 * d] *= 4.0
        state[name] = w
    state["detr.query_embed.weight"] = state["detr.query_embed.weight"] * 3.0
    return state


def reference_model(cfg, seed: int = 0) -> DETRPanoptic:
    torch.manual_seed(seed)
    model = DETRPanoptic(cfg).eval()
    model.load_state_dict(nontrivial_state(model, seed + 1), strict=True)
    _class_head_reads_differences(model)
    return model


@torch.no_grad()
def _class_head_reads_differences(model, scale: float = 40.0) -> None:
    """With random weights every query's box embedding is nearly the same vector (a query-free common
    part, then small differences), so every query would get the same class. Make the class head blind
    to the common part (its rows orthogonal to the mean embedding on a fixed input) and scale it, so
    that the differences between queries decide their classes."""
    x = torch.linspace(-2, 2, 3 * 64 * 64).view(1, 3, 64, 64)
    hs = model.detect(x).hs[-1, 0]                             # (N, d)
    c = hs.mean(0) / hs.mean(0).norm()                         # (d,)
    w = model.detr.class_embed.weight                          # (C+1, d)
    w.sub_((w @ c)[:, None] * c[None]).mul_(scale)
