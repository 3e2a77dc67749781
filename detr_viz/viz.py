"""Drawing helpers shared by the pages (numpy / PIL / matplotlib colour maps; no Streamlit).

Colour maps are perceptually uniform and readable by colour-blind students: `viridis` for
non-negative values (activations, attention), `cividis` as an alternative, and a blue-white-orange
diverging map (`coolwarm`-like `PuOr`) for signed values (logits, positions).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from matplotlib import colormaps
from PIL import Image, ImageDraw, ImageFont

from .boxes import cxcywh_to_xyxy

SEQUENTIAL = "viridis"
DIVERGING = "PuOr_r"


def to_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float32).numpy()
    return np.asarray(x, dtype=np.float32)


def colorize(values, cmap: str = SEQUENTIAL, vmin=None, vmax=None, symmetric: bool = False) -> np.ndarray:
    """(h, w) values -> (h, w, 3) uint8 through a matplotlib colour map.

    symmetric: scale to [-a, a] with a = max |value| (for signed values such as logits)."""
    v = to_numpy(values)
    finite = v[np.isfinite(v)]
    if symmetric:
        a = float(np.abs(finite).max()) if finite.size else 1.0
        vmin, vmax = -a, a
    vmin = float(finite.min()) if vmin is None and finite.size else (0.0 if vmin is None else vmin)
    vmax = float(finite.max()) if vmax is None and finite.size else (1.0 if vmax is None else vmax)
    scaled = (v - vmin) / (vmax - vmin) if vmax > vmin else np.zeros_like(v)
    rgba = colormaps[cmap](np.clip(np.nan_to_num(scaled), 0, 1))
    return (rgba[..., :3] * 255).astype(np.uint8)


def heatmap(values, size=None, cmap: str = SEQUENTIAL, smooth: bool = False, **kw) -> Image.Image:
    """(h, w) values as a colour picture, optionally resized to size = (W, H) (nearest, so that
    the cells show; bilinear with smooth). kw: vmin, vmax, symmetric, as for `colorize`."""
    rgb = colorize(values, cmap, **kw)
    img = Image.fromarray(rgb)
    return img.resize(tuple(size), Image.BILINEAR if smooth else Image.NEAREST) if size else img


MAX_ASPECT = 3      # a picture is drawn at most 3 times as high as it is wide


def size_at_width(hw, width: int) -> tuple[int, int]:
    """(W, H) of a picture `width` pixels wide of something hw = (h, w) in size (same aspect ratio).

    Very tall things (a 1 x 3000 strip) are drawn narrower instead, at most MAX_ASPECT x `width`
    high; very wide ones at least 1 pixel high."""
    h, w = hw
    width = int(width)
    height = max(1, round(width * h / w))
    if height > MAX_ASPECT * width:
        height = MAX_ASPECT * width
        width = max(1, round(height * w / h))
    return width, height


def edge_mask(ids: np.ndarray) -> np.ndarray:
    """(h, w) bool: True on the pixels whose right or lower neighbour has another id (the outlines
    between segments or owners, one pixel thick)."""
    edge = np.zeros(ids.shape, bool)
    edge[:-1] |= ids[:-1] != ids[1:]
    edge[:, :-1] |= ids[:, :-1] != ids[:, 1:]
    return edge


def grid(images: list, ncols: int, labels: list | None = None, pad: int = 4, label_height: int = 18,
         background=(255, 255, 255)) -> Image.Image:
    """Tile equally sized PIL images into one picture, with an optional label above each."""
    if not images:
        return Image.new("RGB", (1, 1), background)
    w, h = images[0].size
    lh = label_height if labels else 0
    nrows = math.ceil(len(images) / ncols)
    out = Image.new("RGB", (ncols * (w + pad) + pad, nrows * (h + lh + pad) + pad), background)
    draw = ImageDraw.Draw(out)
    font = load_font(max(11, lh - 5))
    for i, img in enumerate(images):
        r, c = divmod(i, ncols)
        x, y = pad + c * (w + pad), pad + r * (h + lh + pad)
        if labels:
            draw.text((x + 2, y + 1), str(labels[i]), fill=(20, 20, 20), font=font)
        out.paste(img.convert("RGB"), (x, y + lh))
    return out


def load_font(size: int):
    for name in ("DejaVuSans.ttf", "Arial.ttf"):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default()


def top_channels(features, k: int = 16) -> list[int]:
    """Indices of the k channels with the highest mean activation. features: (C, h, w)."""
    f = to_numpy(features)
    return np.argsort(-f.reshape(f.shape[0], -1).mean(1))[:k].tolist()


def pca(features, k: int = 3, oversample: int = 8, power_iters: int = 3) -> tuple[np.ndarray, float]:
    """Principal components of the cells of (C, h, w) features: ((hw, k) scores, share of the
    variance they hold). A randomized SVD with a fixed seed (deterministic, and fast where a full
    SVD of an 850 x 2048 matrix takes seconds on a busy CPU); each component's sign is chosen so
    that its largest loading is positive."""
    f = to_numpy(features)
    d = f.shape[0]
    x = f.reshape(d, -1).T.astype(np.float64)              # (hw, C)
    x = x - x.mean(0)
    total = float((x ** 2).sum())
    p = min(k + oversample, *x.shape)
    q, _ = np.linalg.qr(x @ np.random.default_rng(0).standard_normal((d, p)))   # (hw, p)
    for _ in range(power_iters):
        q, _ = np.linalg.qr(x @ (x.T @ q))
    _, sv, vt = np.linalg.svd(q.T @ x, full_matrices=False)   # (p, C) -> components
    vt = vt[:k]
    vt *= np.sign(vt[np.arange(len(vt)), np.abs(vt).argmax(1)])[:, None]
    share = float((sv[:k] ** 2).sum() / total) if total > 0 else 0.0
    return (x @ vt.T).astype(np.float32), share             # (hw, k)


def pca_rgb(features) -> np.ndarray:
    """(d, h, w) features -> (h, w, 3) uint8: the 3 principal components as R, G, B."""
    f = to_numpy(features)
    return scores_rgb(pca(f, 3)[0], f.shape[1:])


def scores_rgb(pcs: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """(h*w, 3) component scores -> (h, w, 3) uint8, each stretched between its 1st and 99th percentile."""
    if pcs.shape[1] < 3:
        pcs = np.pad(pcs, ((0, 0), (0, 3 - pcs.shape[1])))
    lo, hi = np.percentile(pcs, 1, axis=0), np.percentile(pcs, 99, axis=0)
    pcs = np.clip((pcs - lo) / np.maximum(hi - lo, 1e-8), 0, 1)
    return (pcs.reshape(*hw, 3) * 255).astype(np.uint8)


def boxes_to_xyxy(boxes, size: tuple[int, int]) -> np.ndarray:
    """(N, 4) normalised (cx, cy, w, h) -> (N, 4) pixel (x0, y0, x1, y1); size = (H, W)."""
    H, W = size
    xyxy = cxcywh_to_xyxy(torch.as_tensor(to_numpy(boxes), dtype=torch.float32))   # (N, 4) in [0, 1]
    return to_numpy(xyxy) * np.array([W, H, W, H], dtype=np.float32)


def draw_boxes(image: Image.Image, boxes_xyxy, labels, colors, width: int = 3, dashed=None,
               font_size: int | None = None) -> Image.Image:
    """Boxes with a label tag each; `dashed[i]` True draws box i dashed (e.g. for stuff).
    font_size: of the tags (default 1/60 of the picture's width, at least 12)."""
    img = image.convert("RGB").copy()
    draw = ImageDraw.Draw(img)
    font = load_font(font_size or max(12, img.width // 60))
    for i, (box, label, color) in enumerate(zip(boxes_xyxy, labels, colors)):
        x0, y0, x1, y1 = [float(v) for v in box]
        color = tuple(int(c) for c in color)
        if dashed is not None and dashed[i]:
            _dashed_rect(draw, (x0, y0, x1, y1), color, width)
        else:
            draw.rectangle((x0, y0, x1, y1), outline=color, width=width)
        tb = draw.textbbox((x0, y0), label, font=font)
        ty = max(0, y0 - (tb[3] - tb[1]) - 4)
        draw.rectangle((x0, ty, x0 + (tb[2] - tb[0]) + 6, ty + (tb[3] - tb[1]) + 4), fill=color)
        draw.text((x0 + 3, ty + 1), label, fill=_text_color(color), font=font)
    return img


def _text_color(rgb) -> tuple[int, int, int]:
    return (0, 0, 0) if 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2] > 140 else (255, 255, 255)


def _dashed_rect(draw, box, color, width, dash: int = 10):
    x0, y0, x1, y1 = box
    for (a, b) in (((x0, y0), (x1, y0)), ((x1, y0), (x1, y1)), ((x1, y1), (x0, y1)), ((x0, y1), (x0, y0))):
        length = math.hypot(b[0] - a[0], b[1] - a[1])
        n = max(1, int(length // dash))
        for k in range(0, n, 2):
            t0, t1 = k / n, min(1.0, (k + 1) / n)
            draw.line((a[0] + (b[0] - a[0]) * t0, a[1] + (b[1] - a[1]) * t0,
                       a[0] + (b[0] - a[0]) * t1, a[1] + (b[1] - a[1]) * t1), fill=color, width=width)


def panoptic_overlay(image: Image.Image, result, alpha: float = 0.6, outlines: bool = True) -> Image.Image:
    """The colour panoptic map of a PanopticResult blended over the image (same size)."""
    rgb = Image.fromarray(result.colorize())
    if rgb.size != image.size:
        rgb = rgb.resize(image.size, Image.NEAREST)
    out = Image.blend(image.convert("RGB"), rgb, alpha)
    if outlines:
        ids = np.asarray(Image.fromarray(result.id_map.astype(np.int32)).resize(image.size, Image.NEAREST))
        arr = np.asarray(out).copy()
        arr[edge_mask(ids)] = (255, 255, 255)
        out = Image.fromarray(arr)
    return out


def fit_width(image: Image.Image, width: int) -> Image.Image:
    """Scale an image to a display width (keeps the aspect ratio)."""
    if image.width == width:
        return image
    return image.resize(size_at_width((image.height, image.width), width), Image.BILINEAR)


class GridLayout:
    """Where the tiles of a `table_grid` picture are, to turn a click into (row, col)."""

    def __init__(self, x0: int, y0: int, tile_w: int, tile_h: int, pad: int, nrows: int, ncols: int):
        self.x0, self.y0, self.tile_w, self.tile_h = x0, y0, tile_w, tile_h
        self.pad, self.nrows, self.ncols = pad, nrows, ncols

    def tile_origin(self, row: int, col: int) -> tuple[int, int]:
        return self.x0 + col * (self.tile_w + self.pad), self.y0 + row * (self.tile_h + self.pad)

    def cell_at(self, x: float, y: float) -> tuple[int, int] | None:
        """(row, col) of the tile under picture pixel (x, y); None on a label or the padding."""
        if x < self.x0 or y < self.y0:
            return None
        col, dx = divmod(x - self.x0, self.tile_w + self.pad)
        row, dy = divmod(y - self.y0, self.tile_h + self.pad)
        if dx >= self.tile_w or dy >= self.tile_h or row >= self.nrows or col >= self.ncols:
            return None
        return int(row), int(col)


def table_grid(tiles: list, row_labels=None, col_labels=None, pad: int = 4, font_size: int = 15,
               background=(255, 255, 255)) -> tuple[Image.Image, GridLayout]:
    """Rows x columns of equally sized PIL images with row labels on the left and column labels on
    top. tiles: a list of rows (lists of images). Returns the picture and its `GridLayout`."""
    nrows = len(tiles)
    ncols = max((len(r) for r in tiles), default=0)
    if not nrows or not ncols:
        return Image.new("RGB", (1, 1), background), GridLayout(0, 0, 1, 1, pad, 0, 0)
    tw, th = tiles[0][0].size
    font = load_font(font_size)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))

    def text_w(s):
        b = probe.textbbox((0, 0), str(s), font=font)
        return b[2] - b[0]
    left = (max(text_w(s) for s in row_labels) + 2 * pad) if row_labels else 0
    top = (font_size + 2 * pad) if col_labels else 0
    layout = GridLayout(left + pad, top + pad, tw, th, pad, nrows, ncols)
    out = Image.new("RGB", (left + pad + ncols * (tw + pad), top + pad + nrows * (th + pad)), background)
    draw = ImageDraw.Draw(out)
    for c, label in enumerate(col_labels or []):
        x, _ = layout.tile_origin(0, c)
        draw.text((x + (tw - text_w(label)) / 2, pad), str(label), fill=(20, 20, 20), font=font)
    for r, row in enumerate(tiles):
        _, y = layout.tile_origin(r, 0)
        if row_labels:
            draw.text((pad, y + (th - font_size) / 2), str(row_labels[r]), fill=(20, 20, 20), font=font)
        for c, img in enumerate(row):
            out.paste(img.convert("RGB"), layout.tile_origin(r, c))
    return out, layout
