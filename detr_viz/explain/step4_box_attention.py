"""Step 4, the box attention maps (pages/4_Box_attention.py): what turns d x N box embeddings and
the d x h x w encoded image into N x M x h x w maps.

The module is DETR's MHAttentionMap (models/segmentation.py), applied to hs[-1] and the encoder
memory:
    q = q_linear(box embedding)                 N x d
    k = k_linear as a 1x1 conv on the memory    d x h x w
    split d into M heads of d/M channels: score[n, m, y, x] = q[n, m] . k[m, :, y, x] / sqrt(d/M)
    softmax over (m, y, x) jointly: the M maps of one query together sum to 1
There are no values and no output projection: the attention weights themselves are the output.
`recompute` redoes these steps with the model's weights and compares with the traced maps.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image

from ..cache import cached
from ..viz import boxes_to_xyxy, draw_boxes, table_grid, to_numpy
from .common import DISPLAY_WIDTH, dims, display_image, grid_overlay
from .step3_decoder import query_class


def formula_latex(trace) -> list[tuple[str, str]]:
    """(caption, LaTeX) pairs of the computation with this trace's sizes filled in."""
    D = dims(trace)
    return [
        ("The query of each box embedding (a linear layer, d to d):",
         rf"q_n = W_q\,\mathrm{{hs}}_n + b_q \in \mathbb{{R}}^{{{D.d}}},\quad n = 1..{D.N}"),
        ("The keys: the same kind of linear layer applied at every cell of the encoded image "
         "(written as a 1x1 convolution):",
         rf"k_{{y,x}} = W_k\,\mathrm{{memory}}_{{y,x}} + b_k \in \mathbb{{R}}^{{{D.d}}},\quad "
         rf"{D.h} \times {D.w} = {D.hw}\ \text{{cells}}"),
        (f"Split both into M = {D.M} heads of d/M = {D.dh} channels and score every head at every cell:",
         rf"s_{{n,m,y,x}} = \frac{{q_{{n,m}} \cdot k_{{m,y,x}}}}{{\sqrt{{{D.dh}}}}}"),
        (f"One softmax over all M x h x w = {D.M} x {D.hw} = {D.M * D.hw} scores of a query "
         "(heads and cells together):",
         rf"A_{{n,m,y,x}} = \frac{{\exp s_{{n,m,y,x}}}}{{\sum_{{m'=1}}^{{{D.M}}}\sum_{{y',x'}} "
         rf"\exp s_{{n,m',y',x'}}}},\qquad \sum_{{m,y,x}} A_{{n,m,y,x}} = 1"),
        ("The output is A itself, no values, no output projection:",
         rf"A \in \mathbb{{R}}^{{{D.N} \times {D.M} \times {D.h} \times {D.w}}}\ "
         rf"(N \times M \times H/{D.stride} \times W/{D.stride})"),
    ]


@cached
def recompute(trace) -> dict:
    """Redo the box attention from hs[-1] and the memory with the model's weights, step by step.

    Returns q (N, d), k (d, h, w), scores (N, M, h, w), the joint-softmax maps (N, M, h, w), and the
    largest difference from the traced `bbox_attention.q` and `bbox_attention`."""
    D = dims(trace)
    mod = trace.model.bbox_attention
    Wq, bq = mod.q_linear.weight.detach().cpu().float(), mod.q_linear.bias.detach().cpu().float()   # (d, d), (d,)
    Wk, bk = mod.k_linear.weight.detach().cpu().float(), mod.k_linear.bias.detach().cpu().float()
    hs = trace["decoder.hs"][-1, 0].float()                 # (N, d) box embeddings
    memory = trace["memory"][0].float()                     # (d, h, w) encoded image
    q = hs @ Wq.T + bq                                      # (N, d)
    k = torch.einsum("oc,chw->ohw", Wk, memory) + bk[:, None, None]   # (d, h, w)
    qh = q.view(D.N, D.M, D.dh)                             # (N, M, d/M)
    kh = k.view(D.M, D.dh, D.h, D.w)                        # (M, d/M, h, w)
    scores = torch.einsum("nmc,mchw->nmhw", qh, kh) / math.sqrt(D.dh)   # (N, M, h, w)
    pad = trace["backbone.mask"][0]                         # (h, w) True = padding
    scores = scores.masked_fill(pad[None, None], float("-inf"))
    maps = scores.flatten(1).softmax(-1).view(scores.shape)   # (N, M, h, w) joint over M*h*w
    traced = trace["bbox_attention"][0].float()             # (N, M, h, w)
    return {"q": q, "k": k, "scores": scores, "maps": maps,
            "q_diff": float((q - trace["bbox_attention.q"][0].float()).abs().max()),
            "maps_diff": float((maps - traced).abs().max()), "scale": 1 / math.sqrt(D.dh)}


def head_shares(trace, queries) -> np.ndarray:
    """(len(queries), M): the sum of each head's map, per query (each row sums to 1)."""
    maps = trace["bbox_attention"][0, list(queries)].double()   # (K, M, h, w)
    return maps.flatten(2).sum(-1).numpy()


def sum_rows(trace, queries, labels=None) -> list[dict]:
    """Per query: the sum of all M maps (1 up to float rounding) and each head's share of it."""
    shares = head_shares(trace, queries)                    # (K, M)
    rows = []
    for i, q in enumerate(queries):
        row = {"query": int(q)}
        if labels is not None:
            row["class"] = labels[i]
        row["sum of its M maps"] = float(shares[i].sum())
        row.update({f"head {m + 1}": float(shares[i, m]) for m in range(shares.shape[1])})
        rows.append(row)
    return rows


def per_head_softmax_sum(rec: dict, q: int) -> float:
    """What the M maps of query q would sum to with a softmax per head instead (always M)."""
    s = rec["scores"][q]                                    # (M, h, w)
    return float(s.flatten(1).softmax(-1).sum())


def query_names(trace, queries) -> list[str]:
    """The class name of each query (its most likely class, possibly "no object")."""
    return [trace.categories.label(query_class(trace, q)[0]) for q in queries]


def row_labels(trace, queries) -> list[str]:
    """Row labels of the grid of maps: 'query class', at most 18 characters."""
    return [f"{q} {name}"[:18] for q, name in zip(queries, query_names(trace, queries))]


@cached
def maps_grid(trace, queries, row_labels, width: int = DISPLAY_WIDTH, scale: str = "query"):
    """Rows = queries, columns = the M heads: each map over the photo.

    scale: 'query' (one colour scale per row: shows which heads carry the query's attention),
    'map' (each map on its own: shows every map's shape), 'all' (one scale for the grid).
    Returns (picture, GridLayout) so a click can be turned into (query row, head)."""
    D = dims(trace)
    maps = to_numpy(trace["bbox_attention"][0, list(queries)])   # (K, M, h, w)
    font = max(14, width // 60)
    label_w = int(0.6 * font * max((len(s) for s in row_labels), default=0)) + 16
    tile = max(60, (width - label_w) // D.M - 4)
    base = display_image(trace, tile)
    top = float(maps.max()) if maps.size else 1.0
    tiles = []
    for i in range(len(queries)):
        vmax = {"query": float(maps[i].max()), "map": None, "all": top}[scale]
        tiles.append([grid_overlay(trace, maps[i, m], base, alpha=0.7, vmin=0, vmax=vmax) for m in range(D.M)])
    return table_grid(tiles, row_labels=row_labels, col_labels=[f"head {m + 1}" for m in range(D.M)],
                      font_size=font)


@cached
def map_picture(trace, q: int, head: int | None, width: int = DISPLAY_WIDTH) -> Image.Image:
    """One query's map (one head, or the sum of its M heads if head is None) over the photo, with
    the query's box."""
    maps = to_numpy(trace["bbox_attention"][0, q])          # (M, h, w)
    values = maps.sum(0) if head is None else maps[head]
    img = grid_overlay(trace, values, display_image(trace, width), alpha=0.7, vmin=0)
    box = boxes_to_xyxy(trace["pred_boxes"][0, q:q + 1], (img.height, img.width))
    return draw_boxes(img, box, [f"query {q}"], [(255, 255, 255)], width=max(3, width // 240),
                      font_size=max(14, width // 36))


def map_summary(trace, q: int, head: int | None) -> dict:
    """Numbers for one map: its share of the query's attention, its peak cell and value."""
    D = dims(trace)
    maps = to_numpy(trace["bbox_attention"][0, q]).astype(np.float64)   # (M, h, w)
    values = maps.sum(0) if head is None else maps[head]
    i = int(values.argmax())
    return {"share": float(values.sum()), "peak": float(values.max()), "peak_cell": (i // D.w, i % D.w),
            "uniform": 1.0 / (D.M * D.hw)}
