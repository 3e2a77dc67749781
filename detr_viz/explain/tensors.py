"""The 'All tensors' page (pages/8_All_tensors.py): the stage table, downloads and a preview
picture of any stage, and the registry of the figures the app can export as PNG."""
from __future__ import annotations

import io
import re

import numpy as np
from PIL import Image

from ..cache import cached
from ..images import denormalize
from ..stages import stage
from ..trace import DERIVED
from ..viz import DIVERGING, SEQUENTIAL, fit_width, grid, heatmap, panoptic_overlay, size_at_width, to_numpy
from .common import shape_str

SUMMARY_COLUMNS = ["stage", "step", "shape", "dtype", "min", "max", "mean", "description"]


def summary(trace, derived: bool = True) -> list[dict]:
    """The All tensors table, one row per stage of the trace: stage, step, shape, dtype, min, max,
    mean, description (SUMMARY_COLUMNS).

    derived: also compute the statistics of the stages rebuilt on request (ReLUs, upsamplings,
    FPN sums, the stem's BN/ReLU); each is built, measured and dropped. Encoder attention that
    was too big to store stays NaN ("computed on request")."""
    rows = []
    for n in trace.names():
        t = trace.tensors.get(n)
        if t is None and derived and n in DERIVED:
            t = trace[n]
        if t is not None:
            stats = _stats(t)
            dtype = str(t.dtype).replace("torch.", "") + ("" if n in trace.tensors else " (rebuilt)")
        else:
            stats, dtype = (float("nan"),) * 3, "float32 (computed on request)"
        st = stage(n, trace.config)                     # description true for this model's stride
        rows.append({"stage": n, "step": st.step, "shape": shape_str(trace.shape(n)),
                     "dtype": dtype, "min": stats[0], "max": stats[1], "mean": stats[2],
                     "description": st.description})
    return rows


def _stats(t) -> tuple[float, float, float]:
    """(min, max, mean) of a tensor (bool counted as 0 / 1); zeros for an empty one."""
    if not t.numel():
        return 0.0, 0.0, 0.0
    f = t.float()
    return float(f.min()), float(f.max()), float(f.mean())


def filter_rows(rows: list[dict], text: str = "", steps=None) -> list[dict]:
    """Rows of summary() whose stage name or description contains every word of `text`
    (case-insensitive), optionally only those of the given steps."""
    words = [w for w in (text or "").lower().split() if w]
    out = []
    for r in rows:
        hay = f"{r['stage']} {r['description']} {r['shape']}".lower()
        if all(w in hay for w in words) and (not steps or r["step"] in steps):
            out.append(r)
    return out


def npz_bytes(trace) -> bytes:
    """The whole trace as a compressed .npz, in memory (Trace.to_npz into a buffer)."""
    buf = io.BytesIO()
    trace.to_npz(buf)
    return buf.getvalue()


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="PNG")
    return buf.getvalue()


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "figure"


# ---------------------------------------------------------------------------------------------
# a picture of any stage
# ---------------------------------------------------------------------------------------------
def _matrix(values: np.ndarray, width: int, signed: bool) -> Image.Image:
    """A 2-D array as a heat map about `width` px wide (at least 40 px a column for narrow tables,
    at least 16 px a row for short ones, at most 800 px high)."""
    v = values if values.ndim == 2 else values.reshape(1, -1)
    rows, cols = v.shape
    W = width if cols >= 40 else max(40 * cols, 160)
    H = int(np.clip(round(W * rows / cols), min(16 * rows, 400), 800))
    return heatmap(v, (W, H), DIVERGING if signed else SEQUENTIAL, smooth=not (cols <= W and rows <= H),
                   symmetric=signed)


def _channels(x: np.ndarray, n: int, tile: int, label: str = "ch", first: int = 0) -> Image.Image:
    """Up to n channels of (C, H, W), each on its own scale (diverging if it has both signs),
    labelled `label` `first`, `first` + 1, ... (first=1 for heads, numbered 1..M in the app)."""
    C, H, W = x.shape
    size = size_at_width((H, W), tile if C > 1 else 3 * tile)
    tiles, labels = [], []
    for c in range(min(n, C)):
        signed = x[c].min() < 0 < x[c].max()
        tiles.append(heatmap(x[c], size, DIVERGING if signed else SEQUENTIAL, smooth=W > size[0], symmetric=signed))
        labels.append(f"{label} {c + first}")
    return grid(tiles, min(4, len(tiles)), labels=labels, label_height=20)


@cached
def stage_preview(trace, name: str, q: int | None = None, n: int = 8, tile: int = 200,
                  width: int = 800) -> tuple[Image.Image, str]:
    """(picture, caption) of a stage: channel grid for feature maps, per-head matrices for attention,
    a heat map for per-query tables; per-query stages show query q (traced if needed)."""
    st = stage(name)
    h, w = trace.grid
    if st.per_query:
        q = trace.mask_queries[0] if q is None else int(q)
        x = to_numpy(trace.query(name, q))                                   # (C, H, W) or (H, W)
        if x.ndim == 2:
            x = x[None]
        return _channels(x, n, tile), f"{name}, query {q}: first {min(n, x.shape[0])} of {x.shape[0]} channels"
    if name == "input":
        return fit_width(Image.fromarray(denormalize(trace[name])), width), "input, un-normalised back to RGB"
    x = to_numpy(trace[name])
    if name in ("input.mask", "backbone.mask"):
        return _matrix(x[0], width, False), f"{name}: 1 = padding (a single image has none)"
    if name.endswith(".self_attn") or name.endswith(".cross_attn"):
        heads = x[0]                                                         # (M, L, S)
        if name.startswith("encoder"):
            hint = "rows: the grid cell that looks; columns: the cells it looks at"
        elif name.endswith("cross_attn"):
            hint = "rows: queries; columns: grid cells"
        else:
            hint = "rows and columns: queries"
        tiles = [_matrix(hd, tile, False) for hd in heads]
        return grid(tiles, 4, labels=[f"head {m + 1}" for m in range(len(tiles))], label_height=20), \
            f"{name}: {heads.shape[0]} heads, each {shape_str(heads.shape[1:3])} ({hint})"
    if name == "bbox_attention":
        q = int(trace.panoptic.kept[0]) if q is None and len(trace.panoptic.kept) else (q or 0)
        return _channels(x[0, q], n, tile, "head", first=1), \
            f"bbox_attention of query {q}: its M maps (heads 1..M) over the {shape_str((h, w))} grid"
    if re.fullmatch(r"encoder\.layer\d+", name):                             # (hw, B, d)
        x = x[:, 0].T.reshape(-1, h, w)                                      # (d, h, w)
        return _channels(x, n, tile), f"{name} as d maps over the {shape_str((h, w))} grid: first {n} channels"
    if x.ndim == 4 and x.shape[0] == 1:                                      # (1, C, H, W) feature maps
        return _channels(x[0], n, tile), f"{name}: first {min(n, x.shape[1])} of {x.shape[1]} channels"
    if x.ndim == 4:                                                          # (L, B, N, C): last layer
        return _matrix(x[-1, 0], width, x.min() < 0 < x.max()), \
            f"{name}, last decoder layer: rows = {x.shape[2]} queries, columns = {x.shape[3]}"
    if x.ndim == 3:                                                          # (B, N, C) or (N, B, d)
        m = x[0] if x.shape[0] == 1 else x[:, 0]
        return _matrix(m, width, m.min() < 0 < m.max()), f"{name}: rows = {m.shape[0]}, columns = {m.shape[1]}"
    if x.ndim == 2:
        return _matrix(x, width, x.min() < 0 < x.max()), f"{name}: {shape_str(x.shape)}"
    return _matrix(x.reshape(1, -1), width, x.min() < 0 < x.max()), name


# ---------------------------------------------------------------------------------------------
# the figures the app draws, as PNG
# ---------------------------------------------------------------------------------------------
def figure_names(trace) -> list[str]:
    return ["Panoptic map over the photo (page 7)", "Panoptic colour map, photo size (page 7)",
            "Merge steps: first argmax, after the stuff merge, final (page 7)",
            "Concat stack of the chosen query (page 5)", "Attention channels of the chosen query (page 5)",
            "Mask sharpening of the chosen query (page 6)", "Mask logits of the chosen query (page 6)"]


def figure(trace, result, name: str, q: int) -> Image.Image:
    """Draw one of `figure_names` (result = the merge at the session threshold)."""
    from . import step5_concat_res5 as concat
    from . import step6_upsampling as upsampling
    from . import step7_merge as merge
    if name.startswith("Panoptic map over"):
        return panoptic_overlay(trace.image, result)
    if name.startswith("Panoptic colour map"):
        return Image.fromarray(result.colorize())
    if name.startswith("Merge steps"):
        colors = merge.query_colors(result, trace.categories)
        maps = (result.winner_before_merge, result.winner_after_merge, result.winner_final)
        tiles = [merge.owner_picture(m, colors, 480, trace.pre.resized_image) for m in maps]
        return grid(tiles, 3, labels=["1. argmax over the kept queries", "2. after the stuff merge",
                                      "3. after the small-segment loop"], label_height=22)
    if name.startswith("Concat stack"):
        s = concat.concat_stack(trace, q)
        return concat.stack_picture(s, concat.feature_channels(s, 6))
    if name.startswith("Attention channels"):
        return concat.attention_grid(concat.concat_stack(trace, q))
    if name.startswith("Mask sharpening"):
        return upsampling.sharpening_picture(upsampling.sharpening(trace, q))
    if name.startswith("Mask logits"):
        return upsampling.logits_picture(upsampling.mask_logits(trace, q), 800)
    raise KeyError(f"unknown figure {name!r}")


def stage_npy_bytes(trace, name: str) -> bytes:
    """One stage as a .npy file in memory (per-query stages: every traced query, rows = mask_queries)."""
    buf = io.BytesIO()
    np.save(buf, to_numpy(trace[name]) if trace[name].dtype.is_floating_point else trace[name].numpy())
    return buf.getvalue()


def trace_megabytes(trace) -> float:
    """Uncompressed size of everything Trace.to_npz writes (float32 / bool), in MB."""
    total = 0
    for n in trace.names():
        if n not in trace.tensors and n not in DERIVED:      # recomputed-only stages are not written
            continue
        shape = trace.shape(n)
        item = 1 if (n in trace.tensors and trace.tensors[n].dtype.itemsize == 1) else 4
        total += int(np.prod(shape)) * item
    return total / 1e6


# ---- what the page draws, cached per trace ---------------------------------------------------------
# Keyed by the traced queries too: the trace grows when a page runs the mask head for another query.
@cached(keep=2)
def summary_at(trace, mask_queries: tuple) -> list[dict]:
    """The All tensors table (`Trace.summary()`) while `mask_queries` are the traced queries."""
    return summary(trace)


@cached(keep=2)
def megabytes_at(trace, mask_queries: tuple) -> float:
    """trace_megabytes while `mask_queries` are the traced queries."""
    return trace_megabytes(trace)
