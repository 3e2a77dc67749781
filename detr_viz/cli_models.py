"""The model choice both commands share (`python -m detr_viz` and `python -m detr_viz quiz`): the
image and model arguments, and the one function that turns them into a model."""
from __future__ import annotations

import argparse
import sys

from . import MODELS, WeightsUnavailable, create_model
from .download import terminal_progress
from .models import DEFAULT_MODEL, OFFLINE_MODEL


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """IMAGE, --model, --checkpoint, --categories, --threshold and --device."""
    p.add_argument("image", help="image file (JPEG, PNG, WebP, BMP, TIFF, GIF)")
    p.add_argument("--model", default="auto",
                   help=f"registry name ({', '.join(MODELS)}), a checkpoint path, or 'auto' "
                        f"(default: {DEFAULT_MODEL} if its weights can be had, else {OFFLINE_MODEL})")
    p.add_argument("--checkpoint",
                   help="your model: a .pth file (official or training-script checkpoint), a Hugging Face "
                        "DetrForSegmentation folder, or a model in the local Hugging Face cache; with --model "
                        "NAME, the weights for that registry model (offline use)")
    p.add_argument("--categories", help="class names: a COCO-panoptic categories JSON (list, or dict with "
                                        "'categories'; id, name, isthing, optional color) or a config.json "
                                        "with id2label")
    p.add_argument("--threshold", type=float, default=None,
                   help="score threshold of the merge (default: the model's, 0.85 for official models)")
    p.add_argument("--device", default=None, help="cpu, cuda or mps (default: best available)")


def load_model(args):
    """The model asked for. 'auto' without --checkpoint falls back to the offline toy-world model
    with a note; an explicit --checkpoint is never swapped for another model."""
    if args.model == "auto" and not args.checkpoint:
        try:
            return create_model(DEFAULT_MODEL, weights="official", device=args.device,
                                progress=terminal_progress("downloading weights"), categories=args.categories)
        except WeightsUnavailable as e:
            print(f"note: the official {DEFAULT_MODEL} weights are not available ({e}).\n"
                  f"      Using the offline '{OFFLINE_MODEL}' model instead.", file=sys.stderr)
            return create_model(OFFLINE_MODEL, weights="official", device=args.device, categories=args.categories)
    if args.model == "auto":                         # --checkpoint alone: the file says what it is
        return create_model(args.checkpoint, device=args.device, categories=args.categories)
    if args.model in MODELS:
        weights = args.checkpoint or "official"
        progress = terminal_progress("downloading weights") if weights == "official" else None
        return create_model(args.model, weights=weights, device=args.device, progress=progress,
                            categories=args.categories)
    return create_model(args.model, device=args.device, categories=args.categories)
