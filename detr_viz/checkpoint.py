"""Reading a checkpoint file safely, and inferring the architecture its weights need.

Files are read with `torch.load(weights_only=True)`: tensors, plain containers and numbers, and
`argparse.Namespace` (the `args` of the official training script), nothing else. A file that
pickles any other class is refused, and the error names the class. Every read checks the hash a
`...-<hex>.pth` file name promises (`hashing.check_file`).
"""
from __future__ import annotations

import argparse
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .config import DETRConfig
from .errors import WeightsUnavailable
from .hashing import check_file
from .registry import MODELS


@dataclass
class LoadedModel:
    """What a model file gave: float32 weights in the official key layout, the config, and what was
    read from where (`source`: "path", "format", "architecture", "categories", optional "name")."""

    state_dict: dict
    config: DETRConfig
    source: dict = field(default_factory=dict)


# ---- reading -----------------------------------------------------------------------------------
def read_torch_file(path, sha256_prefix: str | None = None):
    """The unpickled content of a PyTorch file, after its hash check (`None`: the name's hash).

    argparse.Namespace is allowed from the start (not on a retry), so a 165 MB file is read once.
    """
    path = check_file(_existing(path), sha256_prefix or None)
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "Unsupported global" in str(e):
            detail = re.search(r"GLOBAL (\S+)", str(e))
            raise WeightsUnavailable(
                f"{path} contains Python objects other than tensors"
                f"{f' ({detail.group(1)})' if detail else ''}, so it was not loaded: only plain "
                f"checkpoints are accepted, for safety.", reason="unsafe checkpoint", path=path) from e
        raise _not_a_checkpoint(path, e) from e
    except Exception as e:                                 # noqa: BLE001 - any decoding failure
        raise _not_a_checkpoint(path, e) from e


def _existing(path) -> Path:
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsUnavailable(f"The checkpoint file {path} does not exist.",
                                 reason="file missing", path=path)
    return path


def state_dict_of(ckpt, path) -> dict:
    """The weights in a loaded checkpoint, as float32: `{"model": sd, ...}` (official and training
    files; the optimizer and scheduler state are dropped), `{"state_dict": sd}` or a bare state dict."""
    if isinstance(ckpt, dict) and isinstance(ckpt.get("model"), dict):
        sd = ckpt["model"]
    elif isinstance(ckpt, dict) and isinstance(ckpt.get("state_dict"), dict):
        sd = ckpt["state_dict"]
    elif isinstance(ckpt, dict) and ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        sd = ckpt
    else:
        raise WeightsUnavailable(
            f"{path} is a PyTorch file but holds no model weights (expected a state dict or a "
            f"dict with a 'model' entry).", reason="not a checkpoint", path=Path(path))
    return {k: to_float32(v) for k, v in sd.items()}


def load_checkpoint(path, sha256_prefix: str | None = None) -> tuple[dict, dict | None]:
    """Read a checkpoint safely (`weights_only=True`): returns (state_dict, config dict or None).

    Accepts `{"model": state_dict, ...}` (official files; a pickled `argparse.Namespace` under
    "args" is allowed) or a bare state dict. Half-precision tensors become float32.
    """
    ckpt = read_torch_file(path, sha256_prefix)
    sd = state_dict_of(ckpt, path)
    config = ckpt.get("config") if isinstance(ckpt.get("config"), dict) else None
    return sd, config


def _not_a_checkpoint(path: Path, err: Exception) -> WeightsUnavailable:
    first = str(err).splitlines()[0] if str(err) else type(err).__name__
    return WeightsUnavailable(
        f"{path} is not a PyTorch checkpoint, or the file is damaged (e.g. an incomplete "
        f"download). Details: {first}", reason="not a checkpoint", path=path)


def to_float32(v):
    if isinstance(v, torch.Tensor) and v.dtype in (torch.float16, torch.bfloat16, torch.float64):
        return v.float()
    return v


# ---- architecture from a state dict -------------------------------------------------------------
def _numbered(keys, prefix: str) -> int:
    """How many distinct N follow `prefix` in `<prefix>N.` keys."""
    pat = re.compile(re.escape(prefix) + r"(\d+)\.")
    return len({m.group(1) for k in keys if (m := pat.match(k))})


def _detr_prefix(keys, what: str) -> str:
    """"detr." for panoptic checkpoints; refuses files that are not DETR panoptic ones."""
    cls_key = next((k for k in keys if k.endswith("class_embed.weight")), None)
    if cls_key is None:
        raise WeightsUnavailable(f"{what} is not a DETR checkpoint (no class_embed.weight).",
                                 reason="not a DETR checkpoint")
    if not any(k.endswith("bbox_attention.q_linear.weight") for k in keys):
        example = MODELS["detr-r50-panoptic"]
        raise WeightsUnavailable(
            f"{what} is a detection-only DETR checkpoint (no box-attention / mask head), so it "
            "cannot make panoptic masks. Use a panoptic checkpoint such as "
            f"{example.file_name} from {example.url}.",
            reason="detection-only checkpoint")
    return cls_key[: -len("class_embed.weight")]


def _backbone_name(keys, prefix: str, bottleneck: bool, what: str) -> str:
    blocks3 = _numbered(keys, prefix + "backbone.0.body.layer3.")
    names = {True: {6: "resnet50", 23: "resnet101", 36: "resnet152"},
             False: {2: "resnet18", 6: "resnet34"}}[bottleneck]
    if blocks3 not in names:
        raise WeightsUnavailable(
            f"Cannot tell the backbone of {what}: layer3 has {blocks3} "
            f"{'bottleneck' if bottleneck else 'basic'} blocks.", reason="unknown backbone")
    return names[blocks3]


def infer_config(state_dict: dict, file_name: str = "", base: DETRConfig | None = None) -> DETRConfig:
    """The DETRConfig that matches a state dict's keys and shapes (official layout).

    Dilation cannot be seen in the weights: it is taken from "dc5" in `file_name`. Fields that
    the weights do not determine (threshold, categories, bbox_attention_scale, ...) come from
    `base` (default DETRConfig()). The number of heads is read from the mask head's first conv,
    which takes hidden_dim + nheads channels.
    """
    base = base or DETRConfig()
    keys = list(state_dict)
    what = file_name or "this checkpoint"
    prefix = _detr_prefix(keys, what)
    try:
        num_cls, hidden_dim = state_dict[prefix + "class_embed.weight"].shape    # (C + 1, d)
        num_queries = state_dict[prefix + "query_embed.weight"].shape[0]       # (N, d)
        enc = _numbered(keys, prefix + "transformer.encoder.layers.")
        dec = _numbered(keys, prefix + "transformer.decoder.layers.")
        part = "encoder" if enc else "decoder"
        ffn = state_dict[prefix + f"transformer.{part}.layers.0.linear1.weight"].shape[0]
        lay1 = next((k for k in keys if k.endswith("mask_head.lay1.weight")), None)
        nheads = state_dict[lay1].shape[0] - hidden_dim if lay1 else base.nheads   # (d + M, d + M, 3, 3)
        bottleneck = (prefix + "backbone.0.body.layer1.0.conv3.weight") in state_dict
    except (KeyError, ValueError, AttributeError) as e:
        raise WeightsUnavailable(f"{what} does not have the layout of a DETR panoptic checkpoint "
                                 f"(missing or odd entry {e}).", reason="not a DETR checkpoint") from e
    return base.replace(
        backbone=_backbone_name(keys, prefix, bottleneck, what),
        dilation="dc5" in Path(file_name).name.lower() or base.dilation,
        hidden_dim=int(hidden_dim), nheads=int(nheads), enc_layers=enc, dec_layers=dec,
        dim_feedforward=int(ffn), num_queries=int(num_queries), num_classes=int(num_cls) - 1)
