"""Step 1, the CNN backbone (pages/1_Backbone.py): the input tensor, Res2..Res5, and input_proj.

Everything is read from the trace; the two live checks (`denormalize_check`, `input_proj_check`)
recompute a stored tensor from its neighbour with the model's own numbers and report the
largest difference.
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from ..cache import cached
from ..images import MEAN, STD, denormalize
from ..stages import stages_of_step
from ..viz import DIVERGING, grid, heatmap, pca, scores_rgb, size_at_width, top_channels
from .common import DISPLAY_WIDTH, dims, display_image, grid_overlay, grid_picture, rgb_grid_picture, tile_width

CHANNEL_NAMES = ("red", "green", "blue")


# ---- the input tensor -----------------------------------------------------------------------------
@cached
def input_info(trace) -> dict:
    """Sizes and value ranges of the network input (the resized, normalised photo)."""
    D = dims(trace)
    x = trace["input"][0]                                   # (3, H, W)
    lo, hi, avg = x.amin((1, 2)), x.amax((1, 2)), x.mean((1, 2))   # (3,) each
    per_channel = [{"channel": CHANNEL_NAMES[c], "mean (ImageNet)": MEAN[c], "std (ImageNet)": STD[c],
                    "min": float(lo[c]), "max": float(hi[c]), "average": float(avg[c])} for c in range(3)]
    return {"original": (D.H0, D.W0), "processed": (D.H, D.W), "scale": D.H / D.H0,
            "min": float(lo.min()), "max": float(hi.max()), "per_channel": per_channel,
            "padding_pixels": int(trace["input.mask"].sum())}


@cached
def denormalized(trace) -> Image.Image:
    """The network input with the normalisation undone: x * std + mean, as an RGB picture."""
    return Image.fromarray(denormalize(trace["input"]))     # (H, W, 3) uint8


@cached
def denormalize_check(trace) -> int:
    """Largest difference (grey levels, 0..255) between the de-normalised input and the resized
    photo: only float rounding separates them."""
    a = np.asarray(denormalized(trace), dtype=np.int16)
    b = np.asarray(trace.pre.resized_image.convert("RGB"), dtype=np.int16)
    return int(np.abs(a - b).max())


@cached
def normalized_channels(trace, width: int = DISPLAY_WIDTH) -> list[Image.Image]:
    """The three channels of the input tensor as signed maps (PuOr, one common scale, 0 = white):
    what the network really receives."""
    x = trace["input"][0]                                   # (3, H, W)
    a = float(x.abs().max())
    tile = tile_width(width, 3)
    size = size_at_width(x.shape[1:], tile)
    small = [np.asarray(Image.fromarray(x[c].numpy()).resize(size, Image.BILINEAR)) for c in range(3)]   # (h', w')
    return [heatmap(v, None, DIVERGING, vmin=-a, vmax=a) for v in small]


# ---- Res2..Res5 ---------------------------------------------------------------------------------------
def level_names(trace) -> list[str]:
    """The backbone levels a page shows, from the stage list: backbone.res2 .. backbone.res5."""
    return [n for n in stages_of_step(1, trace.config) if n.startswith("backbone.res")]


def level_label(name: str) -> str:
    return "Res" + name[-1]


def level_stride(trace, name: str) -> int:
    """Stride of a level: 4, 8, 16, then 32 (16 with DC5) for Res5."""
    k = int(name[-1])
    return trace.config.stride if k == 5 else 2 ** k


def resize_note(config) -> str:
    """What the resize to `config.input_size` / `max_input_size` is: for a COCO model, the official
    evaluation size (training used random scales); for the toy world, its training scenes' size."""
    short, cap = config.input_size, config.max_input_size
    if config.categories == "toyworld":
        return (f"the toy world's size: its scenes are {short} x {short} pixels, and the shipped model was "
                f"trained on them at that size")
    if (short, cap) == (800, 1333):
        return ("the official evaluation size; in training the shorter side was drawn at random from 480 to "
                "800 pixels (longer side at most 1333), after a random flip and, half of the time, a random crop")
    return f"the size this model's config gives ({short} / {cap or 'no cap'})"


@cached
def levels(trace) -> list[dict]:
    """One row per level: shape, stride, and how sparse the (post-ReLU) activations are."""
    D = dims(trace)
    rows = []
    for n in level_names(trace):
        f = trace[n][0]                                     # (C, h_k, w_k)
        s = level_stride(trace, n)
        rows.append({"level": level_label(n), "stage": n, "channels": int(f.shape[0]),
                     "height": int(f.shape[1]), "width": int(f.shape[2]), "stride": s,
                     "size check": f"ceil({D.H}/{s}) = {f.shape[1]}, ceil({D.W}/{s}) = {f.shape[2]}",
                     "zeros": 1.0 - int(torch.count_nonzero(f)) / f.numel(), "mean": float(f.mean()),
                     "max": float(f.max())})
    return rows


@cached
def most_active(trace, name: str, k: int = 16) -> list[int]:
    """The k channels of a level with the highest mean activation over the image."""
    return top_channels(trace[name][0], k)


@cached
def channels_grid(trace, name: str, channels, width: int = DISPLAY_WIDTH, ncols: int = 4) -> Image.Image:
    """A grid of channels of one level, each scaled on its own (viridis), in the photo's frame."""
    f = trace[name][0]                                      # (C, h_k, w_k)
    tile = tile_width(width, ncols)
    stride = level_stride(trace, name)
    tiles = [grid_picture(trace, f[c], tile, stride=stride) for c in channels]
    return grid(tiles, ncols, labels=[f"channel {c}" for c in channels], label_height=max(18, tile // 8))


@cached
def channel_picture(trace, name: str, channel: int, width: int = DISPLAY_WIDTH) -> tuple[Image.Image, Image.Image]:
    """One channel large: the map on its own (nearest, so its cells show) and over the photo."""
    f = trace[name][0, channel]                             # (h_k, w_k)
    stride = level_stride(trace, name)
    alone = grid_picture(trace, f, width, stride=stride)
    over = grid_overlay(trace, f, display_image(trace, width), stride=stride)
    return alone, over


# ---- Res5 -> input_proj -------------------------------------------------------------------------------
def input_proj_info(model) -> dict:
    """input_proj, the 1x1 conv that takes Res5 to d channels: its weight, bias and parameter count."""
    conv = model.detr.input_proj
    w, b = conv.weight, conv.bias                           # (d, C5, 1, 1), (d,)
    return {"weight": tuple(w.shape), "bias": tuple(b.shape), "in": int(w.shape[1]), "out": int(w.shape[0]),
            "parameters": int(w.numel() + b.numel())}


@cached
def input_proj_check(trace) -> float:
    """Largest |input_proj - (W @ Res5 + b)| over the map: the 1x1 conv is a matrix product per cell."""
    conv = trace.model.detr.input_proj
    res5 = trace["backbone.res5"][0]                        # (C5, h, w)
    W = conv.weight.detach().to("cpu", torch.float32)[:, :, 0, 0]   # (d, C5)
    b = conv.bias.detach().to("cpu", torch.float32)
    mine = torch.einsum("dc,chw->dhw", W, res5.float()) + b[:, None, None]   # (d, h, w)
    return float((mine - trace["input_proj"][0].float()).abs().max())


@cached
def pca_picture(trace, name: str, width: int = DISPLAY_WIDTH) -> tuple[Image.Image, float]:
    """The 3 principal components of a (1, C, h, w) grid stage as R, G, B, in the photo's frame
    (cells of one colour have similar feature vectors), and the share of the variance they hold."""
    f = trace[name][0]                                      # (C, h, w)
    pcs, share = pca(f, 3)                                  # (hw, 3)
    return rgb_grid_picture(trace, scores_rgb(pcs, tuple(f.shape[1:])), width), share


__all__ = ["input_info", "denormalized", "denormalize_check", "normalized_channels", "level_names",
           "level_label", "level_stride", "levels", "most_active", "channels_grid", "channel_picture",
           "input_proj_info", "input_proj_check", "pca_picture"]
