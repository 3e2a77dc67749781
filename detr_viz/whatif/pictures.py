"""Pictures of what-if results, drawn with the project's helpers (`detr_viz.viz`)."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from .. import viz

KEPT, LOST, GAINED = (235, 235, 235), (230, 120, 20), (40, 110, 230)   # orange / blue: colour-blind safe


def _fit(array: np.ndarray, width: int) -> Image.Image:
    """(h, w[, 3]) uint8 -> a picture `width` wide, cells kept sharp (nearest)."""
    img = Image.fromarray(array)
    return img.resize(viz.size_at_width(array.shape[:2], width), Image.NEAREST)


def mask_overlay(trace, logits: torch.Tensor, width: int = 240, dim: float = 0.25) -> Image.Image:
    """The photo (as the network saw it) with everything outside the mask (logits <= 0) dimmed."""
    photo = viz.fit_width(trace.pre.resized_image, width)
    inside = Image.fromarray((viz.to_numpy(logits) > 0).astype(np.uint8) * 255).resize(photo.size, Image.NEAREST)
    dark = Image.eval(photo.convert("RGB"), lambda v: int(v * dim))
    return Image.composite(photo.convert("RGB"), dark, inside)


def change_picture(before: torch.Tensor, after: torch.Tensor, width: int = 240) -> Image.Image:
    """Binarised masks compared: in both light grey, lost orange, gained blue, elsewhere black."""
    a, b = viz.to_numpy(before) > 0, viz.to_numpy(after) > 0
    rgb = np.zeros((*a.shape, 3), np.uint8)
    rgb[a & b], rgb[a & ~b], rgb[~a & b] = KEPT, LOST, GAINED
    return _fit(rgb, width)


def diff_picture(diff: torch.Tensor, width: int = 240) -> Image.Image:
    """Signed logit change (after - before) on the diverging map, symmetric around 0."""
    return _fit(viz.colorize(diff, viz.DIVERGING, symmetric=True), width)


def head_maps(maps: torch.Tensor, width: int = 120, vmax: float | None = None) -> list[Image.Image]:
    """(M, h, w) attention maps -> M pictures on one common scale (0 .. vmax, default the largest)."""
    vmax = float(maps.max()) if vmax is None else vmax
    return [_fit(viz.colorize(m, viz.SEQUENTIAL, vmin=0.0, vmax=vmax or 1.0), width) for m in maps]


def owner_change_picture(result, width: int = 240) -> Image.Image:
    """A MergeResult or OcclusionResult: the changed panoptic map, pixels that kept their owner dimmed."""
    rgb = result.changed.colorize().astype(np.float32)
    rgb[~result.owner_changed] *= 0.3
    return _fit(rgb.astype(np.uint8), width)
