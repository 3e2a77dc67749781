"""Checkpoints written by the official training script (`main.py --masks`).

`checkpoint.pth` is `{"model": state_dict, "optimizer", "lr_scheduler", "epoch", "args"}`, where
`args` is the run's `argparse.Namespace`. The optimizer and scheduler state are dropped; the
architecture is read from `args` where it is there, else from the weights; the number of classes
always comes from the weights (custom datasets have their own).
"""
from __future__ import annotations

import argparse

from ..checkpoint import infer_config
from ..config import DETRConfig
from ..errors import WeightsUnavailable

# Namespace attribute -> DETRConfig field (the same names in both).
ARCH_FIELDS = ("backbone", "dilation", "hidden_dim", "nheads", "enc_layers", "dec_layers",
               "dim_feedforward", "num_queries")


def is_training_checkpoint(ckpt) -> bool:
    return isinstance(ckpt, dict) and isinstance(ckpt.get("args"), argparse.Namespace)


def _refuse_unsupported(args: argparse.Namespace, what: str) -> None:
    """Options of the official code this model does not implement: a clear error, not wrong outputs."""
    if getattr(args, "pre_norm", False):
        raise WeightsUnavailable(
            f"{what} was trained with --pre_norm (layer norm before attention); this app implements "
            "DETR's default post-norm transformer only, so it cannot explain this model.",
            reason="unsupported architecture")
    pos = getattr(args, "position_embedding", "sine")
    if pos not in ("sine", "v2"):
        raise WeightsUnavailable(
            f"{what} uses --position_embedding {pos}; this app implements the sine position encoding "
            "(the default) only.", reason="unsupported architecture")


def config_from_args(args: argparse.Namespace, state_dict: dict, what: str,
                     base: DETRConfig | None = None) -> tuple[DETRConfig, list[str]]:
    """(config, fields read from args): the architecture from `args`, the rest from the weights."""
    _refuse_unsupported(args, what)
    inferred = infer_config(state_dict, what, base)          # also refuses detection-only files
    given = {f: getattr(args, f) for f in ARCH_FIELDS if getattr(args, f, None) is not None}
    try:
        return inferred.replace(**given), sorted(given)
    except (ValueError, TypeError) as e:
        raise WeightsUnavailable(f"The args stored in {what} describe a model this app cannot build: {e}",
                                 reason="unsupported architecture") from e


def default_categories(args: argparse.Namespace, num_classes: int) -> str:
    """COCO's table for a COCO-panoptic run with its 250 classes, else generic names."""
    coco = getattr(args, "dataset_file", "") == "coco_panoptic" and num_classes == 250
    return "coco" if coco else "generic"
