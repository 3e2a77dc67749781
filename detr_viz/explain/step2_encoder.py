"""Step 2, the transformer encoder (pages/2_Encoder.py): where the encoded image comes from.

The encoded image is the encoder's output `memory` (B x d x h x w): input_proj(Res5) flattened to
hw tokens of d numbers, passed through the encoder layers with the sine position encoding added
to the queries and keys (not the values) of every self-attention. The layers are post-norm and
there is no final norm, so `memory` IS the last layer's output, reshaped (`memory_check`).
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from ..cache import cached
from ..viz import DIVERGING, grid, pca_rgb, to_numpy
from .common import (
    DISPLAY_WIDTH,
    cell_index,
    dims,
    display_image,
    effective_cells,
    grid_overlay,
    grid_picture,
    mark_cell,
    rgb_grid_picture,
    tile_width,
)


# ---- where the encoded image comes from ----------------------------------------------------------
@cached
def memory_check(trace) -> dict:
    """Live facts about `memory`: it equals the last encoder layer's output reshaped (no final norm),
    and how much the encoder changed input_proj(Res5)."""
    D = dims(trace)
    memory = trace["memory"]                                # (B, d, h, w)
    last = trace[f"encoder.layer{D.enc_layers - 1}"]        # (hw, B, d)
    as_map = last.permute(1, 2, 0).reshape(memory.shape)    # (B, d, h, w)
    src = trace["input_proj"]                               # (B, d, h, w)
    cos = torch.nn.functional.cosine_similarity(memory.flatten(2), src.flatten(2), dim=1)   # (B, hw)
    return {"last_layer_diff": float((as_map - memory).abs().max()),
            "changed_from_input": float((memory - src).abs().mean()),
            "input_mean_abs": float(src.abs().mean()),
            "cosine_to_input": float(cos.mean()),
            "last_layer": f"encoder.layer{D.enc_layers - 1}"}


# ---- the sine position encoding ----------------------------------------------------------------
def position_channels(trace) -> list[tuple[str, int]]:
    """A few channels of the position encoding worth showing: for y and for x, the fastest sine
    and cosine (one period over the image) and slower ones. (label, channel) pairs."""
    half = dims(trace).d // 2
    picks = sorted({0, 1, max(2, (half // 16) // 2 * 2), max(2, (half // 4) // 2 * 2)})
    out = []
    for axis, base in (("y", 0), ("x", half)):
        for i in picks:
            out.append((f"{axis} · ch {base + i} · {'sin' if i % 2 == 0 else 'cos'}", base + i))
    return out


def position_frequency(trace, channel: int) -> float:
    """How many periods channel `channel` makes across the image: 1 / T^(2 floor(i/2) / (d/2))."""
    half = dims(trace).d // 2
    i = channel % half
    return float(1.0 / 10000 ** (2 * (i // 2) / half))


@cached
def position_grid(trace, width: int = DISPLAY_WIDTH) -> Image.Image:
    """The chosen position channels as signed maps (PuOr, -1 .. 1): y channels in the first row,
    x channels in the second."""
    pos = trace["position"][0]                              # (d, h, w)
    chans = position_channels(trace)
    ncols = len(chans) // 2
    tile = tile_width(width, ncols)
    tiles = [grid_picture(trace, pos[c], tile, DIVERGING, vmin=-1, vmax=1) for _, c in chans]
    labels = []
    for lab, c in chans:
        f = position_frequency(trace, c)
        labels.append(f"{lab} · {f:.2g} period" + ("" if abs(f - 1) < 1e-9 else "s"))
    return grid(tiles, ncols, labels=labels, label_height=max(22, tile // 10))


@cached
def position_check(trace) -> float:
    """Largest |recomputed - stored| of the position encoding, from the formula on the page."""
    D = dims(trace)
    half = D.d // 2
    rows = torch.arange(1, D.h + 1, dtype=torch.float32) / (D.h + 1e-6) * 2 * np.pi   # (h,)
    cols = torch.arange(1, D.w + 1, dtype=torch.float32) / (D.w + 1e-6) * 2 * np.pi   # (w,)
    i = torch.arange(half, dtype=torch.float32)
    freq = 10000 ** (2 * (i // 2) / half)                   # (d/2,)
    ang_y = rows[:, None] / freq                            # (h, d/2)
    ang_x = cols[:, None] / freq                            # (w, d/2)
    even = (torch.arange(half) % 2 == 0)
    py = torch.where(even, ang_y.sin(), ang_y.cos())        # (h, d/2)
    px = torch.where(even, ang_x.sin(), ang_x.cos())        # (w, d/2)
    pos = torch.cat([py.T[:, :, None].expand(half, D.h, D.w), px.T[:, None, :].expand(half, D.h, D.w)])   # (d, h, w)
    if bool(trace["backbone.mask"].any()):                  # padded batch: the formula counts valid cells only
        return float("nan")
    return float((pos - trace["position"][0]).abs().max())


# ---- the encoded image as a picture -------------------------------------------------------------
@cached
def memory_pca(trace, width: int = DISPLAY_WIDTH) -> Image.Image:
    """The encoded image's 3 principal components as R, G, B."""
    return rgb_grid_picture(trace, pca_rgb(trace["memory"][0]), width)


@cached
def memory_norm(trace) -> np.ndarray:
    """(h, w) L2 norm of each cell's d-vector in the encoded image."""
    return to_numpy(trace["memory"][0].norm(dim=0))


@cached
def memory_norm_picture(trace, width: int = DISPLAY_WIDTH) -> Image.Image:
    """The per-cell norm over the photo (viridis, min .. max; 0 .. max when all norms are nearly
    equal, so that rounding noise is not painted as structure)."""
    norm = memory_norm(trace)
    flat = (norm.max() - norm.min()) <= 0.01 * max(float(norm.max()), 1e-12)
    return grid_overlay(trace, norm, display_image(trace, width), alpha=0.75, vmin=0.0 if flat else None)


# ---- self-attention of one cell ------------------------------------------------------------------
@cached
def cell_attention(trace, layer: int, cell) -> np.ndarray:
    """(M, h, w): where grid cell `cell` = (row, col) looks in encoder layer `layer`, per head.
    Each head's map sums to 1 (the softmax of nn.MultiheadAttention is per head)."""
    return to_numpy(trace.encoder_attention_row(layer, cell_index(trace, cell)))


def attention_summary(maps: np.ndarray, cell, k: int = 5) -> dict:
    """Numbers for one cell's attention map (h, w) (one head, or the mean of the heads)."""
    m = np.asarray(maps, dtype=np.float64)
    h, w = m.shape
    flat = m.ravel()
    order = np.argsort(-flat)[:k]
    return {"self": float(m[cell[0], cell[1]]), "sum": float(flat.sum()),
            "top": [(int(i // w), int(i % w), float(flat[i])) for i in order],
            "top_share": float(flat[order].sum()), "effective_cells": effective_cells(flat), "cells": h * w}


def attention_overlay(trace, maps: np.ndarray, cell, width: int = DISPLAY_WIDTH, vmax=None) -> Image.Image:
    """An (h, w) attention map over the photo, the attending cell outlined."""
    return mark_cell(trace, grid_overlay(trace, maps, display_image(trace, width), alpha=0.65, vmin=0, vmax=vmax),
                     cell)


def heads_grid(trace, maps: np.ndarray, cell, width: int = DISPLAY_WIDTH, ncols: int = 4,
               shared_scale: bool = False) -> Image.Image:
    """The M heads' maps (M, h, w) over the photo in a grid, the attending cell outlined."""
    M = maps.shape[0]
    tile = tile_width(width, ncols)
    base = display_image(trace, tile)
    vmax = float(maps.max()) if shared_scale else None
    tiles = [mark_cell(trace, grid_overlay(trace, maps[m], base, alpha=0.65, vmin=0, vmax=vmax), cell, width=2)
             for m in range(M)]
    return grid(tiles, ncols, labels=[f"head {m + 1}" for m in range(M)], label_height=max(22, tile // 8))

@cached
def average_attention_picture(trace, layer: int, cell, width: int = DISPLAY_WIDTH) -> Image.Image:
    """The mean of the M heads' maps of `cell` in encoder layer `layer`, over the photo."""
    return attention_overlay(trace, cell_attention(trace, layer, cell).mean(0), cell, width)    # (h, w)


@cached
def heads_attention_picture(trace, layer: int, cell, width: int = DISPLAY_WIDTH,
                            shared_scale: bool = False) -> Image.Image:
    """The M heads' maps of `cell` in encoder layer `layer`, each over the photo, in a grid."""
    return heads_grid(trace, cell_attention(trace, layer, cell), cell, width, shared_scale=shared_scale)
