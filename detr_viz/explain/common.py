"""What several explain modules share: the live sizes of a trace (`dims`), shape formatting
(`shape_str`), the photo at a display width, and the geometry of the transformer's h x w grid laid
over the photo.

Grid geometry, stated once: the network input is the photo resized to H x W; the res5 grid has
h = ceil(H / s), w = ceil(W / s) cells for stride s (32, or 16 with DC5), and cell (r, c) is the
s x s patch of the resized image starting at (r*s, c*s). Where H or W is not a multiple of s the
last row / column of cells is cut by the image border. Pictures here draw grid maps with exactly
that geometry (not stretched to the image), so a clicked pixel and its marked cell agree.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from ..cache import cached
from ..viz import SEQUENTIAL, colorize, fit_width, size_at_width

DISPLAY_WIDTH = 720          # main pictures: readable on a projector (the app's pages use this one too)


@dataclass(frozen=True)
class Dims:
    """The live sizes of one trace (everything a page writes into its text)."""
    H0: int                  # photo height (after EXIF rotation, before the resize)
    W0: int
    H: int                   # network input height (the resized photo)
    W: int
    h: int                   # res5 grid height (the transformer's grid)
    w: int
    stride: int              # s: 32, or 16 with DC5
    d: int                   # hidden size
    M: int                   # attention heads
    N: int                   # object queries
    C: int                   # classes (the class head has C + 1 outputs; the last is no object)
    channels: tuple          # backbone channels of res2, res3, res4, res5
    enc_layers: int
    dec_layers: int
    backbone: str

    @property
    def hw(self) -> int:
        return self.h * self.w

    @property
    def dh(self) -> int:
        """Channels per head, d / M."""
        return self.d // self.M

    @property
    def C5(self) -> int:
        return self.channels[-1]


def dims(trace) -> Dims:
    cfg = trace.config
    H0, W0 = trace.pre.original_size
    H, W = trace.pre.processed_size
    h, w = trace.grid
    return Dims(H0=int(H0), W0=int(W0), H=int(H), W=int(W), h=int(h), w=int(w), stride=cfg.stride,
                d=cfg.hidden_dim, M=cfg.nheads, N=cfg.num_queries, C=cfg.num_classes,
                channels=tuple(cfg.backbone_channels), enc_layers=cfg.enc_layers,
                dec_layers=cfg.dec_layers, backbone=cfg.backbone)


SHAPE_SEPARATOR = " x "


def shape_str(shape) -> str:
    """(1, 2048, 25, 34) -> '1 x 2048 x 25 x 34': every shape and size the app writes, in one format."""
    return SHAPE_SEPARATOR.join(str(int(s)) for s in shape)


@cached
def display_image(trace, width: int = DISPLAY_WIDTH) -> Image.Image:
    """The photo at a display width, cached on the trace (a 4096-pixel photo is not resized again on
    every page run). Shared: draw on a copy, never on the returned image itself."""
    return fit_width(trace.image.convert("RGB"), width)


# ---- the h x w grid over the photo --------------------------------------------------------------
def cell_of_pixel(trace, x: float, y: float, image_size=None) -> tuple[int, int]:
    """(row, col) of the grid cell holding pixel (x, y) of the photo (or of a picture of it of
    `image_size` = (width, height))."""
    D = dims(trace)
    iw, ih = image_size or (D.W0, D.H0)
    px, py = x * D.W / iw, y * D.H / ih                     # pixel of the network input
    return (min(D.h - 1, max(0, int(py // D.stride))), min(D.w - 1, max(0, int(px // D.stride))))


def cell_rect(trace, cell, image_size) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) of grid cell (row, col) in a picture of the photo of size (width, height)."""
    D = dims(trace)
    iw, ih = image_size
    sx, sy = iw / D.W, ih / D.H
    r, c = cell
    return (c * D.stride * sx, r * D.stride * sy,
            min(D.W, (c + 1) * D.stride) * sx, min(D.H, (r + 1) * D.stride) * sy)


def grid_to_picture(trace, rgb: np.ndarray, size, stride: int | None = None) -> Image.Image:
    """An (h_k, w_k, 3) uint8 grid picture laid over a picture of the photo of size (width, height):
    every cell is one stride x stride patch of the network input (default stride: the transformer
    grid's); the part of the last row / column beyond the image border is cut off."""
    D = dims(trace)
    s = stride or D.stride
    gh, gw = rgb.shape[:2]
    iw, ih = size
    full_w = max(iw, round(gw * s * iw / D.W))              # the whole grid at this scale
    full_h = max(ih, round(gh * s * ih / D.H))
    img = Image.fromarray(np.ascontiguousarray(rgb)).resize((full_w, full_h), Image.NEAREST)
    return img.crop((0, 0, iw, ih))


def picture_size(trace, width: int) -> tuple[int, int]:
    """(width, height) of a picture of the photo `width` pixels wide."""
    D = dims(trace)
    return size_at_width((D.H0, D.W0), width)


def grid_overlay(trace, values, base: Image.Image, alpha: float = 0.6, cmap: str = SEQUENTIAL,
                 vmin=None, vmax=None, symmetric: bool = False, stride: int | None = None) -> Image.Image:
    """Blend the heat map of a grid of values (h_k, w_k) over `base` (a picture of the photo)."""
    heat = grid_to_picture(trace, colorize(values, cmap, vmin=vmin, vmax=vmax, symmetric=symmetric),
                           base.size, stride)
    return Image.blend(base.convert("RGB"), heat, alpha)


def grid_picture(trace, values, width: int = DISPLAY_WIDTH, cmap: str = SEQUENTIAL, vmin=None, vmax=None,
                 symmetric: bool = False, stride: int | None = None) -> Image.Image:
    """A grid of values on its own, in the photo's frame, `width` pixels wide."""
    rgb = colorize(values, cmap, vmin=vmin, vmax=vmax, symmetric=symmetric)
    return grid_to_picture(trace, rgb, picture_size(trace, width), stride)


def rgb_grid_picture(trace, rgb: np.ndarray, width: int = DISPLAY_WIDTH, stride: int | None = None) -> Image.Image:
    """An (h_k, w_k, 3) uint8 grid picture (e.g. principal components) in the photo's frame."""
    return grid_to_picture(trace, rgb, picture_size(trace, width), stride)


def mark_cell(trace, image: Image.Image, cell, color=(255, 40, 40), width: int = 3) -> Image.Image:
    """Outline grid cell (row, col) on a picture of the photo (with a white halo, visible anywhere)."""
    img = image.convert("RGB").copy()
    x0, y0, x1, y1 = cell_rect(trace, cell, img.size)
    draw = ImageDraw.Draw(img)
    draw.rectangle((x0 - width, y0 - width, x1 + width, y1 + width), outline=(255, 255, 255), width=max(1, width // 2))
    draw.rectangle((x0, y0, x1, y1), outline=color, width=width)
    return img


@cached
def marked_photo(trace, cell, width: int = DISPLAY_WIDTH) -> Image.Image:
    """The photo at a display width with grid cell (row, col) outlined."""
    return mark_cell(trace, display_image(trace, width), cell)


def box_cell(trace, box_cxcywh) -> tuple[int, int]:
    """The grid cell under the centre of a normalised (cx, cy, w, h) box.

    The box is a fraction of the (unpadded) network input, W x H pixels, so its centre is input
    pixel (cx * W, cy * H), and that pixel lies in cell (floor(cy * H / s), floor(cx * W / s)) of
    the stride-s grid, clamped to the last row / column (which the image border may cut)."""
    D = dims(trace)
    cx, cy = min(max(float(box_cxcywh[0]), 0.0), 1.0), min(max(float(box_cxcywh[1]), 0.0), 1.0)
    return min(D.h - 1, int(cy * D.H // D.stride)), min(D.w - 1, int(cx * D.W // D.stride))


def cell_index(trace, cell) -> int:
    """Row-major index of a grid cell in the flattened hw sequence of the transformer."""
    return int(cell[0]) * dims(trace).w + int(cell[1])


def tile_width(width: int, ncols: int, pad: int = 4) -> int:
    """Width of each of `ncols` tiles so that a `viz.grid` (padding `pad`) is at most `width` wide."""
    return max(16, (width - (ncols + 1) * pad) // ncols)


def effective_cells(weights) -> float:
    """exp(entropy) of a distribution: 'about how many cells' it spreads over (1 .. n)."""
    p = np.asarray(weights, dtype=np.float64).ravel()
    p = p[p > 0]
    p = p / p.sum()
    return float(math.exp(-(p * np.log(p)).sum())) if p.size else 0.0
