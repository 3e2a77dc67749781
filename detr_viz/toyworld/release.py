"""The shipped file of a trained toy-world model: {"model": float16 state dict, "config": dict,
"meta": dict}. It is loaded like every other checkpoint, with `detr_viz.create_model(path)`."""
from __future__ import annotations

import torch
from torch import nn

from ..config import DETRConfig


def export_state_dict(model: nn.Module) -> dict:
    """float16 copy of the weights in the layout of a `frozen_bn=True` model."""
    sd = {}
    for k, v in model.state_dict().items():
        if k.endswith("num_batches_tracked"):
            continue
        v = v.detach().cpu().contiguous()
        sd[k] = v.half() if v.is_floating_point() else v
    return sd


def save_release(model, cfg: DETRConfig, path, meta: dict) -> None:
    """Write the shipped file. The config carries the training resize (shorter side = the scene
    size; longer side capped at 3x that, so a panorama cannot blow up the encoder), so `trace()`
    feeds the model images at the scale it was trained on."""
    size = int(meta.get("input_size", cfg.input_size))
    cfg_dict = cfg.replace(frozen_bn=True, input_size=size, max_input_size=3 * size).to_dict()
    torch.save({"model": export_state_dict(model), "config": cfg_dict, "meta": meta}, path)


def release_meta(path) -> dict:
    """The "meta" record of a shipped file (training facts, PQ), read safely (`weights_only`)."""
    return dict(torch.load(path, map_location="cpu", weights_only=True).get("meta", {}))
