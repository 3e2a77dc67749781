"""Step 3, the decoder (pages/3_Decoder.py): N object queries become N box embeddings.

hs[-1] (B x N x d: the curriculum's "d x N box embeddings") is the last decoder layer's output
after the decoder's shared LayerNorm. Two small heads read every embedding: class_embed (a linear
layer to C + 1 logits, the last one "no object") and bbox_embed (a 3-layer MLP, then a sigmoid,
to a box cx, cy, w, h in [0, 1] of the image). The same heads read every layer's output, which
is how a query's guess can be followed layer by layer.
"""
from __future__ import annotations

import numpy as np
import torch
from matplotlib import colormaps
from PIL import Image, ImageDraw

from .. import postprocess
from ..cache import cached
from ..viz import boxes_to_xyxy, draw_boxes, grid, load_font, to_numpy
from .common import DISPLAY_WIDTH, dims, display_image, grid_overlay, tile_width
from .step7_merge import merged

# Okabe-Ito, for lines of a chart (colour-blind safe); "no object" is drawn grey and dashed.
LINE_COLORS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442")


def class_probs(trace) -> torch.Tensor:
    """(N, C+1) class probabilities of the final layer (the last column is "no object"): the trace's
    `decoder.class_probs` of the last decoder layer, i.e. softmax(pred_logits)."""
    return trace["decoder.class_probs"][-1, 0]


def query_class(trace, q: int) -> tuple[int, float]:
    """(label, probability) of query q's most likely class (possibly "no object")."""
    score, label = class_probs(trace)[int(q)].max(-1)
    return int(label), float(score)


def real_class_ranking(trace) -> list[int]:
    """All queries, most sure of a real class first (no object left out of the probability)."""
    return postprocess.real_class_ranking(class_probs(trace))


def kind_of(trace, label: int) -> str:
    """'thing', 'stuff' or 'no object' for a class index."""
    if label == trace.categories.no_object:
        return "no object"
    return "thing" if trace.categories.is_thing(label) else "stuff"


# Class names a student knows, tried first as examples of things and of stuff.
FAMILIAR = {True: ("person", "car", "dog", "boat", "circle", "square", "star"),
            False: ("sky", "grass", "water", "road", "wall", "tree")}


def class_examples(categories, isthing: bool, n: int = 2) -> list[str]:
    """n class names of the model's category table that are things (or stuff), familiar ones first."""
    names = [c.name for c in categories.used() if c.isthing == isthing]
    familiar = [n for x in FAMILIAR[isthing] for n in names if n.split("-")[0] == x]   # "sky-other-merged"
    return list(dict.fromkeys(familiar + names))[:n]


def query_rows(trace, panoptic) -> list[dict]:
    """One row per query (all N): its class, score, kind, whether the merge keeps it, its box."""
    D = dims(trace)
    probs = class_probs(trace)                              # (N, C+1)
    scores, labels = probs.max(-1)                          # (N,), (N,)
    best_p, best = probs[:, :-1].max(-1)                    # the best real class, even under no object
    xyxy = boxes_to_xyxy(trace["pred_boxes"][0], (D.H0, D.W0))   # (N, 4) photo pixels
    kept = set(int(q) for q in panoptic.kept)
    in_map = {s["query"]: s for s in panoptic.segments}
    rows = []
    for q in range(D.N):
        label = int(labels[q])
        seg = in_map.get(q)
        rows.append({
            "query": q, "class": trace.categories.label(label), "kind": kind_of(trace, label),
            "score": float(scores[q]), "p(no object)": float(probs[q, -1]),
            "best real class": f"{trace.categories.label(int(best[q]))} ({float(best_p[q]):.2f})",
            "kept": q in kept, "area in map (px)": int(seg["area"]) if seg else 0,
            "box (x0, y0, x1, y1)": "({:.0f}, {:.0f}, {:.0f}, {:.0f})".format(*xyxy[q]),
        })
    return rows


def box_color(trace, panoptic, q: int) -> tuple[int, int, int]:
    """The query's colour in the panoptic map if it has a segment, else its category colour."""
    seg = panoptic.segment_of_query(q)
    if seg is not None:
        return tuple(seg["color"])
    return tuple(trace.categories[int(panoptic.labels[q])].color)


def kept_boxes_picture(trace, panoptic, width: int = DISPLAY_WIDTH) -> Image.Image:
    """The kept queries' final boxes on the photo: things solid, stuff dashed, tagged 'q: class score'."""
    base = display_image(trace, width)
    kept = [int(q) for q in panoptic.kept]
    if not kept:
        return base
    xyxy = boxes_to_xyxy(trace["pred_boxes"][0, kept], (base.height, base.width))   # (K, 4)
    labels = [f"{q}: {trace.categories.label(int(panoptic.labels[q]))} {panoptic.scores[q]:.2f}" for q in kept]
    colors = [box_color(trace, panoptic, q) for q in kept]
    dashed = [not trace.categories.is_thing(int(panoptic.labels[q])) for q in kept]
    return draw_boxes(base, xyxy, labels, colors, width=max(3, width // 240), dashed=dashed,
                      font_size=max(14, width // 36))


# ---- one query, layer by layer --------------------------------------------------------------------
def layer_probs(trace, q: int, top: int = 4) -> dict[str, np.ndarray]:
    """Class probabilities of query q after every decoder layer: the `top` real classes (by their
    highest probability over the layers) and 'no object'. {label: (L,) array}."""
    probs = to_numpy(trace["decoder.class_probs"][:, 0, q])   # (L, C+1)
    real = probs[:, :-1]
    order = np.argsort(-real.max(0))[:top]
    out = {trace.categories.label(int(c)): real[:, c] for c in order}
    out["no object"] = probs[:, -1]
    return out


def class_index_note(categories) -> str:
    """Why the class head is wider than the category list (COCO: 250 indices, 133 categories), or ''."""
    used = categories.used()
    C = categories.num_classes
    if len(used) >= C:
        return ""
    things = sum(c.isthing for c in used)
    where = ("the class index *is* the COCO panoptic category id (ids run from 1 to "
             f"{max(c.id for c in used)}, with gaps), and the official head is sized for {C}" if categories.name == "coco"
             else f"the class index is the category id, and the head is sized for {C}")
    return (f"Why {C} classes? Because {where}. Only **{len(used)} of the {C} indices are real categories** "
            f"({things} things, {len(used) - things} stuff); the other {C - len(used)} were never a training "
            f"target, so their probabilities stay near 0. Where a table says \"unused id k\", it means one of "
            f"those indices.")


@cached
def layer_table(trace, q: int) -> list[dict]:
    """Per layer: argmax class, its probability, p(no object), the box in photo pixels."""
    D = dims(trace)
    probs = trace["decoder.class_probs"][:, 0, q]           # (L, C+1)
    boxes = boxes_to_xyxy(trace["decoder.boxes"][:, 0, q], (D.H0, D.W0))   # (L, 4)
    p, lab = probs.max(-1)
    return [{"layer": i + 1, "class": trace.categories.label(int(lab[i])), "probability": float(p[i]),
             "p(no object)": float(probs[i, -1]),
             "box (x0, y0, x1, y1)": "({:.0f}, {:.0f}, {:.0f}, {:.0f})".format(*boxes[i])}
            for i in range(probs.shape[0])]


def layer_probs_figure(trace, q: int, top: int = 4):
    """Plotly line chart of `layer_probs`: probability against decoder layer."""
    import plotly.graph_objects as go
    series = layer_probs(trace, q, top)
    L = len(next(iter(series.values())))
    fig = go.Figure()
    for i, (name, ys) in enumerate(series.items()):
        nobj = name == "no object"
        fig.add_trace(go.Scatter(
            x=list(range(1, L + 1)), y=[float(v) for v in ys], name=name, mode="lines+markers",
            line=dict(color="#777777" if nobj else LINE_COLORS[i % len(LINE_COLORS)], width=3,
                      dash="dash" if nobj else "solid"), marker=dict(size=9)))
    fig.update_layout(height=340, margin=dict(l=10, r=10, t=10, b=40), font=dict(size=15),
                      xaxis=dict(title="decoder layer", dtick=1), yaxis=dict(title="probability", range=[0, 1.02]),
                      legend=dict(orientation="h", yanchor="bottom", y=1.0))
    return fig


def layer_colors(L: int) -> list[tuple[int, int, int]]:
    """One viridis colour per decoder layer (dark = first, yellow = last)."""
    cmap = colormaps["viridis"]
    return [tuple(int(255 * v) for v in cmap(i / max(1, L - 1))[:3]) for i in range(L)]


@cached
def layer_boxes_picture(trace, q: int, width: int = DISPLAY_WIDTH) -> Image.Image:
    """Query q's box after every decoder layer on the photo, coloured by layer (viridis); a row of
    tags L1 .. LL above the final box gives the colours; the final box is drawn thickest."""
    img = display_image(trace, width).copy()
    boxes = boxes_to_xyxy(trace["decoder.boxes"][:, 0, q], (img.height, img.width))   # (L, 4)
    L = boxes.shape[0]
    draw = ImageDraw.Draw(img)
    size = max(14, width // 26)
    font = load_font(size)
    line = max(3, width // 240)
    for i, (box, color) in enumerate(zip(boxes, layer_colors(L))):
        x0, y0, x1, y1 = [float(v) for v in box]
        draw.rectangle((x0 - 1, y0 - 1, x1 + 1, y1 + 1), outline=(255, 255, 255), width=1)
        draw.rectangle((x0, y0, x1, y1), outline=color, width=line + 2 if i == L - 1 else line)
    # the tags in a row along the top of the final box: "L1", "L2", ... in their layer's colour
    x0, y0 = float(boxes[-1][0]), float(boxes[-1][1])
    x_tag, y_tag = max(0.0, x0), max(0.0, y0 - 1.35 * size) if y0 > 1.35 * size else y0 + line + 2
    for i, color in enumerate(layer_colors(L)):
        tag = f"L{i + 1}"
        tb = draw.textbbox((x_tag, y_tag), tag, font=font)
        if tb[2] + 3 > img.width:                           # no room left on this row: start at the left
            x_tag = 0.0
            tb = draw.textbbox((x_tag, y_tag), tag, font=font)
        draw.rectangle((tb[0] - 3, tb[1] - 3, tb[2] + 3, tb[3] + 3), fill=color)
        draw.text((x_tag, y_tag), tag, fill=(0, 0, 0) if i > L * 0.5 else (255, 255, 255), font=font)
        x_tag = tb[2] + 10
    return img


# ---- cross-attention into the encoded image ---------------------------------------------------------
@cached
def cross_attention(trace, layer: int, q: int) -> np.ndarray:
    """(M, h, w): where query q looks in the encoded image in decoder layer `layer`, per head (each
    head's map sums to 1; their mean is what nn.MultiheadAttention reports by default)."""
    D = dims(trace)
    return to_numpy(trace[f"decoder.layer{layer}.cross_attn"][0, :, q].reshape(D.M, D.h, D.w))


def final_box(trace, q: int, layer: int, size) -> np.ndarray:
    """(4,) the box of query q after decoder layer `layer`, in pixels of a picture of size (W, H)."""
    return boxes_to_xyxy(trace["decoder.boxes"][layer, 0, q:q + 1], (size[1], size[0]))[0]


def cross_attention_picture(trace, maps: np.ndarray, q: int, layer: int, width: int = DISPLAY_WIDTH,
                            color=(255, 255, 255)) -> Image.Image:
    """An (h, w) cross-attention map over the photo, with the query's box of that layer."""
    img = grid_overlay(trace, maps, display_image(trace, width), alpha=0.65, vmin=0)
    box = final_box(trace, q, layer, img.size)
    return draw_boxes(img, [box], [f"query {q}, layer {layer + 1}"], [color], width=3,
                      font_size=max(14, width // 40))


def cross_heads_grid(trace, maps: np.ndarray, q: int, layer: int, width: int = DISPLAY_WIDTH,
                     ncols: int = 4) -> Image.Image:
    """The M heads' cross-attention maps (M, h, w) of one query and layer, each over the photo."""
    M = maps.shape[0]
    tile = tile_width(width, ncols)
    base = display_image(trace, tile)
    box = final_box(trace, q, layer, base.size)
    tiles = []
    for m in range(M):
        t = grid_overlay(trace, maps[m], base, alpha=0.65, vmin=0)
        ImageDraw.Draw(t).rectangle(tuple(float(v) for v in box), outline=(255, 255, 255), width=2)
        tiles.append(t)
    return grid(tiles, ncols, labels=[f"head {m + 1}" for m in range(M)], label_height=max(22, tile // 8))


@cached
def embedding_check(trace) -> dict:
    """Live facts: the box embeddings are hs[-1]; pred_logits / pred_boxes are the heads on it."""
    model = trace.model
    hs = trace["decoder.hs"]                                 # (L, B, N, d)
    dev = next(model.parameters()).device
    with torch.no_grad():
        logits = model.detr.class_embed(hs[-1].to(dev)).cpu()    # (B, N, C+1)
        boxes = model.detr.bbox_embed(hs[-1].to(dev)).sigmoid().cpu()   # (B, N, 4)
    return {"hs": tuple(hs.shape), "box_embeddings": tuple(hs[-1].shape),
            "logits_diff": float((logits - trace["pred_logits"]).abs().max()),
            "boxes_diff": float((boxes - trace["pred_boxes"]).abs().max())}

# ---- what the page draws, cached per trace (keyed by threshold, query, layer, width) ------------------
@cached
def query_rows_at(trace, threshold: float) -> list[dict]:
    """query_rows of the merge at `threshold`."""
    return query_rows(trace, merged(trace, threshold))


@cached
def kept_boxes_picture_at(trace, threshold: float, width: int = DISPLAY_WIDTH) -> Image.Image:
    """kept_boxes_picture of the merge at `threshold`."""
    return kept_boxes_picture(trace, merged(trace, threshold), width)


@cached
def average_cross_picture(trace, layer: int, q: int, width: int = DISPLAY_WIDTH) -> Image.Image:
    """Query q's cross-attention in decoder layer `layer`, averaged over the heads, over the photo."""
    return cross_attention_picture(trace, cross_attention(trace, layer, q).mean(0), q, layer, width)   # (h, w)


@cached
def heads_cross_picture(trace, layer: int, q: int, width: int = DISPLAY_WIDTH) -> Image.Image:
    """Query q's M cross-attention maps in decoder layer `layer`, in a grid."""
    return cross_heads_grid(trace, cross_attention(trace, layer, q), q, layer, width)
