"""Step 7, the panoptic merge, taken apart for teaching (pages/7_Merge.py).

Everything here reads the intermediate results of `PanopticResult` (winner maps before and after
the stuff merge and after the small-segment loop, the merges, the drops) and the traced mask
logits; nothing re-implements the merge except where a page needs one pixel's numbers
(`pixel_report`), which is checked against the merge's own maps.

Sizes: h4 x w4 = the mask grid (1/4 of the network input), h x w = the processed size (the network
input, where the official code takes the argmax), H_t x W_t = the target size (the photo).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from ..postprocess import SMALL_AREA, instance_color
from ..viz import SEQUENTIAL, edge_mask, fit_width, heatmap, load_font, panoptic_overlay, size_at_width

NO_OWNER = (40, 40, 40)         # colour of pixels no kept query owns (only when nothing is kept)


# ---------------------------------------------------------------------------------------------
# geometry: the official resizes, one pixel at a time
# ---------------------------------------------------------------------------------------------
def nearest_index(n_in: int, n_out: int) -> np.ndarray:
    """(n_out,) source index of each output index of a PIL NEAREST resize n_in -> n_out.

    The merge resizes its id map to the target size with PIL nearest neighbour; PIL's fixed-point
    arithmetic is separable, so one row (or column) resized the same way gives the exact mapping."""
    row = Image.fromarray(np.arange(n_in, dtype=np.int32)[None, :])          # mode "I", (1, n_in)
    return np.asarray(row.resize((n_out, 1), Image.NEAREST))[0].astype(np.int64)


def target_to_processed(x: int, y: int, target_size, processed_size) -> tuple[int, int]:
    """The processed-size pixel whose owner the target pixel (x, y) shows (PIL nearest, as the merge)."""
    (Ht, Wt), (h, w) = target_size, processed_size
    return int(nearest_index(w, Wt)[x]), int(nearest_index(h, Ht)[y])


@lru_cache(maxsize=16)
def _bilinear_axis(n_in: int, n_out: int):
    """PyTorch's own bilinear (align_corners=False) weights along one axis, read off by resizing
    one-hot rows with F.interpolate: (i0, i1, w0, w1), each (n_out,). (Its weights are not exactly
    the float32 textbook formula, so they are measured rather than re-derived.)"""
    eye = torch.eye(n_in, dtype=torch.float32)[:, None, None, :]                 # (n_in, 1, 1, n_in)
    W = F.interpolate(eye, size=(1, n_out), mode="bilinear")[:, 0, 0].numpy()    # (n_in, n_out)
    i0 = (W != 0).argmax(0)
    i1 = np.minimum(i0 + 1, n_in - 1)
    cols = np.arange(n_out)
    w0 = W[i0, cols]
    w1 = np.where(i1 != i0, W[i1, cols], 0).astype(np.float32)
    return i0, i1, w0, w1


def bilinear_at(masks, size, ys, xs) -> np.ndarray:
    """Values of `masks` (K, h4, w4) bilinearly resized to `size` = (h, w) (align_corners=False, as
    F.interpolate in the merge), at pixels (ys[i], xs[i]) only: (K, len(ys)) float32. Costs K x 4
    reads a pixel instead of resizing K full maps."""
    m = masks.detach().to(torch.float32).cpu().numpy() if isinstance(masks, torch.Tensor) else \
        np.asarray(masks, np.float32)
    h4, w4 = m.shape[-2:]
    ys, xs = np.atleast_1d(ys), np.atleast_1d(xs)
    y0, y1, wy0, wy1 = (a[ys] for a in _bilinear_axis(h4, int(size[0])))
    x0, x1, wx0, wx1 = (a[xs] for a in _bilinear_axis(w4, int(size[1])))
    top = wx0 * m[:, y0, x0] + wx1 * m[:, y0, x1]                             # (K, P)
    bottom = wx0 * m[:, y1, x0] + wx1 * m[:, y1, x1]
    return (wy0 * top + wy1 * bottom).astype(np.float32)


def softmax(x: np.ndarray, axis: int = 0) -> np.ndarray:
    x = np.asarray(x, np.float64)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


# ---------------------------------------------------------------------------------------------
# which queries, which colours
# ---------------------------------------------------------------------------------------------
def survivors(result) -> list[int]:
    """Queries that own a segment in the final map, in segment-id order."""
    return [int(s["query"]) for s in result.segments]


def query_colors(result, categories) -> dict[int, tuple[int, int, int]]:
    """A colour for every kept query: its segment's colour if it survived, else a shade of its class
    colour (so a dropped stuff duplicate differs from the query it was merged into)."""
    colors, count = {}, {}
    seg_color = {int(s["query"]): tuple(s["color"]) for s in result.segments}
    for q in (int(v) for v in result.kept):
        label = int(result.labels[q])
        n = count.get(label, 0)
        count[label] = n + 1
        colors[q] = seg_color.get(q) or instance_color(categories[label].color, n + 1)
    return colors


def query_name(result, categories, q: int) -> str:
    label = int(result.labels[q])
    return f"query {q} · {categories.label(label)}"


# ---------------------------------------------------------------------------------------------
# tables
# ---------------------------------------------------------------------------------------------
def filter_rows(result, categories) -> list[dict]:
    """Step 1, every query: class, score and why it is kept or not (strict '>' threshold)."""
    no_object = categories.no_object
    kept = {int(q) for q in result.kept}                  # the merge's own decision (postprocess.keep_mask)
    dropped = {d["query"]: d for d in result.dropped}
    seg = {int(s["query"]): s for s in result.segments}
    rows = []
    for q in np.argsort(-result.scores, kind="stable"):
        q, label, score = int(q), int(result.labels[q]), float(result.scores[q])
        if q not in kept and label == no_object:
            status = "not kept: its most likely class is 'no object'"
        elif q not in kept:
            status = f"not kept: score {score:.4f} is not > {result.threshold:.2f}"
        elif q in seg:
            status = f"kept → segment {seg[q]['id']} ({seg[q]['area']:,} px)"
        elif q in dropped:
            status = f"kept, then dropped: {dropped[q]['reason']}"
        else:
            status = "kept"
        rows.append({"query": q, "class": categories.label(label),
                     "thing/stuff": "-" if label == no_object else ("thing" if categories.is_thing(label) else "stuff"),
                     "score": score, "kept": q in kept,
                     "what happens": status})
    return rows


def legend_rows(result) -> list[dict]:
    """The final segments: colour, segment id, COCO name, thing/stuff, area (target px), score, query."""
    total = max(1, int(np.prod(result.target_size)))
    return [{"colour": hex_color(s["color"]), "id": s["id"], "class": s["name"],
             "category id": s["category_id"], "thing/stuff": "thing" if s["isthing"] else "stuff",
             "area (px)": s["area"], "area (%)": 100.0 * s["area"] / total, "score": s["score"],
             "query": s["query"]} for s in result.segments]


# ---------------------------------------------------------------------------------------------
# maps
# ---------------------------------------------------------------------------------------------
def owner_rgb(owner: np.ndarray, colors: dict) -> np.ndarray:
    """(h, w) query indices (-1 = nobody) -> (h, w, 3) uint8 in the queries' colours (a lookup table)."""
    top = max(int(owner.max()) if owner.size else 0, max(colors, default=0))
    lut = np.empty((top + 2, 3), np.uint8)
    lut[:] = NO_OWNER
    for q, c in colors.items():
        lut[int(q) + 1] = c
    return lut[owner + 1]


def _at_size(image: Image.Image, size) -> Image.Image:
    image = image.convert("RGB")
    return image if image.size == tuple(size) else image.resize(size, Image.BILINEAR)


def owner_picture(owner: np.ndarray, colors: dict, width: int, image: Image.Image | None = None,
                  alpha: float = 0.35, outlines: bool = True) -> Image.Image:
    """A winner map (query index per pixel) at display `width`, optionally over the photo, with
    white lines where the owner changes (so two queries of one class stay distinguishable)."""
    size = size_at_width(owner.shape, width)
    small = np.asarray(Image.fromarray(owner.astype(np.int32)).resize(size, Image.NEAREST))   # (H_d, W_d)
    rgb = owner_rgb(small, colors).astype(np.float32)
    if image is not None:
        photo = np.asarray(_at_size(image, size), dtype=np.float32)
        rgb = (1 - alpha) * rgb + alpha * photo
    if outlines:
        rgb[edge_mask(small)] = 255
    return Image.fromarray(rgb.clip(0, 255).astype(np.uint8))


def changed_picture(before: np.ndarray, after: np.ndarray, colors: dict, width: int,
                    image: Image.Image | None = None) -> Image.Image:
    """Pixels whose owner changed between two winner maps, in the new owner's colour; the rest grey."""
    size = size_at_width(before.shape, width)
    b = np.asarray(Image.fromarray(before.astype(np.int32)).resize(size, Image.NEAREST))
    a = np.asarray(Image.fromarray(after.astype(np.int32)).resize(size, Image.NEAREST))
    if image is not None:
        grey = np.asarray(_at_size(image, size).convert("L"), dtype=np.float32)
        base = np.repeat((0.35 * grey + 110)[..., None], 3, axis=-1)
    else:
        base = np.full((*b.shape, 3), 200.0, np.float32)
    changed = a != b
    rgb = base
    rgb[changed] = owner_rgb(a, colors)[changed]
    return Image.fromarray(rgb.clip(0, 255).astype(np.uint8))


def reassignments(before: np.ndarray, after: np.ndarray) -> list[dict]:
    """Where the pixels that changed owner went: rows (from, to, pixels), largest first."""
    changed = before != after                                                 # (h, w) bool
    if not changed.any():
        return []
    n = int(max(before.max(), after.max())) + 2                               # query ids (and -1) -> 0..n-1
    code = (before[changed].astype(np.int64) + 1) * n + (after[changed].astype(np.int64) + 1)
    counts = np.bincount(code)
    rows = [{"from": int(c // n - 1), "to": int(c % n - 1), "pixels": int(counts[c])} for c in np.nonzero(counts)[0]]
    return sorted(rows, key=lambda r: -r["pixels"])


def fate_of_dropped(result) -> list[dict]:
    """For each dropped query: the pixels it won in the first argmax and their final owners."""
    out = []
    for d in result.dropped:
        q = d["query"]
        own = result.winner_before_merge == q                                 # (h, w) bool
        counts = np.bincount(result.winner_final[own].astype(np.int64) + 1)   # +1: -1 (nothing kept) -> 0
        order = [int(i) for i in np.argsort(-counts, kind="stable") if counts[i] > 0]
        out.append({**d, "won_first_pass": int(own.sum()),
                    "went_to": [(i - 1, int(counts[i])) for i in order]})
    return out


@dataclass
class QuarterMap:
    """The argmax over the surviving queries' raw logits at the mask grid (h4 x w4): the '1/4 map'."""
    owner: np.ndarray           # (h4, w4) query index per mask cell
    agreement: float            # fraction of processed pixels where its nearest enlargement = winner_final
    size: tuple                 # (h4, w4)


def quarter_map(trace, result) -> QuarterMap:
    qs = survivors(result)
    masks = trace.mask_logits(qs)                                              # (S, h4, w4)
    h4, w4 = trace.shape("pred_masks")[-2:]
    if not qs:
        return QuarterMap(np.full((h4, w4), -1, np.int32), 1.0, (h4, w4))
    owner = np.asarray(qs, np.int32)[masks.argmax(0).numpy()]                 # (h4, w4)
    h, w = result.winner_final.shape
    big = owner[nearest_index(h4, h)][:, nearest_index(w4, w)]                # (h, w)
    return QuarterMap(owner, float((big == result.winner_final).mean()), (h4, w4))


def confidence_map(trace, result) -> np.ndarray:
    """(h4, w4) highest softmax probability over the kept queries' mask logits, per mask cell
    (how clear-cut the first-pass argmax is; computed at the mask grid for speed)."""
    masks = trace.mask_logits(result.kept)                                     # (K, h4, w4)
    if masks.shape[0] == 0:
        return np.zeros(trace.shape("pred_masks")[-2:], np.float32)
    return masks.softmax(0).max(0).values.numpy()


# ---------------------------------------------------------------------------------------------
# one pixel
# ---------------------------------------------------------------------------------------------
@dataclass
class PixelReport:
    target_xy: tuple            # (x, y) in the photo (target size)
    processed_xy: tuple         # (x, y) in the network input, where the argmax is taken
    rows: list                  # per kept query: query, class, kind, logit, p (all kept), p (survivors), role
    first: int                  # winner of the first-pass argmax (query index)
    after_merge: int            # owner after the stuff merge
    final: int                  # final owner
    segment: dict | None        # the final segment of this pixel
    steps: list = field(default_factory=list)    # explanation lines (markdown)
    exact: bool = True          # the recomputed argmax agrees with the merge's own maps


def pixel_report(trace, result, x: int, y: int, categories=None) -> PixelReport:
    """Every kept query's mask logit and softmax probability at one photo pixel, and why the pixel
    got its label (first argmax -> stuff merge -> small-segment loop)."""
    cats = categories or trace.categories
    Ht, Wt = result.id_map.shape
    x, y = int(np.clip(x, 0, Wt - 1)), int(np.clip(y, 0, Ht - 1))
    h, w = result.processed_size
    px, py = target_to_processed(x, y, (Ht, Wt), (h, w))
    kept = [int(q) for q in result.kept]
    if not kept:
        return PixelReport((x, y), (px, py), [], -1, -1, -1, None,
                           [f"No query has a class score above {result.threshold:.2f}, so no mask is used "
                            "and the map is empty. Lower the threshold."])
    logits = bilinear_at(trace.mask_logits(kept), (h, w), [py], [px])[:, 0]    # (K,)
    p_all = softmax(logits)
    alive = survivors(result)
    alive_idx = [kept.index(q) for q in alive]
    p_alive = np.full(len(kept), np.nan)
    if alive_idx:
        p_alive[alive_idx] = softmax(logits[alive_idx])
    first = int(result.winner_before_merge[py, px])
    after = int(result.winner_after_merge[py, px])
    final = int(result.winner_final[py, px])
    exact = first == kept[int(np.argmax(logits))] and (
        not alive_idx or final == kept[alive_idx[int(np.argmax(logits[alive_idx]))]])
    seg = result.segments[int(result.id_map[y, x])] if result.segments else None
    dropped = {d["query"]: d for d in result.dropped}

    rows = []
    for i, q in enumerate(kept):
        label = int(result.labels[q])
        role = []
        if q == first:
            role.append("wins first argmax")
        if q == final:
            role.append("final owner")
        if q in dropped:
            role.append(f"dropped (round {dropped[q]['round']})")
        rows.append({"query": q, "class": cats.label(label), "kind": "thing" if cats.is_thing(label) else "stuff",
                     "mask logit": float(logits[i]), "p (all kept)": float(p_all[i]),
                     "p (survivors)": float(p_alive[i]), "role": ", ".join(role)})

    name = lambda q: f"query {q} ({cats.label(int(result.labels[q]))})"
    K = len(kept)
    i_first = kept.index(first)
    h4, w4 = trace.shape("pred_masks")[-2:]
    steps = [f"Photo pixel (x={x}, y={y}) is pixel (x={px}, y={py}) of the {h} × {w} network input (height × width), "
             f"where the merge compares the {K} kept masks (bilinearly stretched from {h4} × {w4}).",
             f"**1. Argmax over the {K} kept queries:** {name(first)} has the highest mask logit here, "
             f"{logits[i_first]:+.3f} (softmax {p_all[i_first]:.3f})."]
    if K > 1:
        runner = int(np.argsort(-logits, kind="stable")[1 if int(np.argmax(logits)) == i_first else 0])
        gap = float(logits[i_first] - logits[runner])
        if abs(gap) < 1e-3:
            steps[-1] += (f" A near tie: {name(kept[runner])} is only {abs(gap):.1e} "
                          f"{'behind' if gap >= 0 else 'ahead in this recomputation'}.")
    merge = next((m for m in result.stuff_merges if first in m["queries"]), None)
    if merge and after != first:
        steps.append(f"**2. Stuff merge:** {name(first)} is a later query of the stuff class "
                     f"*{merge['name']}* (queries {', '.join(map(str, merge['queries']))}); its pixels are "
                     f"relabelled to the first one, {name(after)}.")
    elif merge:
        steps.append(f"**2. Stuff merge:** {name(first)} is the first *{merge['name']}* query; "
                     f"the other ones' pixels are relabelled to it. This pixel keeps its owner.")
    else:
        steps.append("**2. Stuff merge:** no change here (the winner is not a duplicated stuff class).")
    if result.dropped:
        gone = [q for q in dict.fromkeys((first, after)) if q in dropped]
        listed = ", ".join(str(q) for q in dropped)
        which = f"query {listed} is" if len(dropped) == 1 else f"queries {listed} are"
        text = (f"**3. Small-segment loop:** {which} dropped (step 4), and the argmax is redone over "
                f"the {len(alive)} remaining queries, **without** the stuff merge. ")
        if gone:
            text += "Here that matters: " + "; ".join(
                f"{name(q)} is gone ({dropped[q]['reason']})" for q in gone) + ". "
        if final < 0:                      # every segment was dropped: the official map is all id 0, no segments
            text += ("No query remains, so the map has no segment at all (the official code writes id 0 "
                     "everywhere, with an empty segment list).")
        else:
            text += f"Among the remaining ones, {name(final)} has the highest logit, {logits[kept.index(final)]:+.3f}."
        if final >= 0 and final != after and not gone:
            text += (" (Its logit ties with the step-2 winner's to within float rounding; the new softmax over "
                     "fewer queries tips the tie.)")
        steps.append(text)
    else:
        steps.append(f"**3. Small-segment loop:** no segment has {SMALL_AREA} px or fewer, so nothing is dropped and "
                     f"{name(final)} keeps the pixel.")
    if seg is not None:
        steps.append(f"**Final:** segment {seg['id']}, *{seg['name']}* ({'thing' if seg['isthing'] else 'stuff'}), "
                     f"{name(seg['query'])}, class score {seg['score']:.3f}, area {seg['area']:,} px.")
    if not exact:
        steps.append("(The recomputed logits are a near tie here; the colours follow the merge's own map.)")
    return PixelReport((x, y), (px, py), rows, first, after, final, seg, steps, exact)


# ---------------------------------------------------------------------------------------------
# small pictures
# ---------------------------------------------------------------------------------------------
def confidence_picture(conf: np.ndarray, width: int) -> Image.Image:
    return heatmap(conf, size_at_width(conf.shape, width), SEQUENTIAL, vmin=0.0, vmax=1.0)


def legend_picture(items, width: int = 720, swatch: int = 22, font_size: int = 17) -> Image.Image:
    """Colour swatches with text, wrapped into rows: items = [(rgb, text), ...]."""
    font = load_font(font_size)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    cells = [(tuple(int(v) for v in c), str(t), probe.textlength(str(t), font=font) + swatch + 26) for c, t in items]
    rows, row, x = [], [], 0
    for cell in cells:
        if row and x + cell[2] > width:
            rows.append(row)
            row, x = [], 0
        row.append(cell)
        x += cell[2]
    if row:
        rows.append(row)
    line = swatch + 8
    out = Image.new("RGB", (width, max(1, len(rows)) * line + 4), (255, 255, 255))
    draw = ImageDraw.Draw(out)
    for r, row in enumerate(rows):
        x, y = 4, 4 + r * line
        for color, text, cw in row:
            draw.rectangle((x, y, x + swatch, y + swatch), fill=color, outline=(60, 60, 60))
            draw.text((x + swatch + 6, y + 1), text, fill=(20, 20, 20), font=font)
            x += int(cw)
    return out


def query_legend(result, categories, colors: dict, queries=None, width: int = 720) -> Image.Image:
    qs = [int(q) for q in (result.kept if queries is None else queries)]
    return legend_picture([(colors.get(q, NO_OWNER), query_name(result, categories, q)) for q in qs], width)


def hex_color(rgb) -> str:
    return "#%02x%02x%02x" % tuple(int(v) for v in rgb)


def mark_point(image: Image.Image, xy, radius: int = 12) -> Image.Image:
    """A black-and-white cross-hair on a copy of `image` at xy (image pixels): visible on any colour."""
    img = image.convert("RGB").copy()
    draw = ImageDraw.Draw(img)
    x, y = xy
    r = max(radius, img.width // 35)
    for color, wd in (((0, 0, 0), max(5, img.width // 200)), ((255, 255, 255), max(2, img.width // 500))):
        draw.line((x - r, y, x + r, y), fill=color, width=wd)
        draw.line((x, y - r, x, y + r), fill=color, width=wd)
    return img


def pixel_charts(report: PixelReport, colors: dict):
    """Two horizontal bar charts (altair, imported here only) of a PixelReport: every kept query's
    mask logit at the pixel, and its softmax probability over the kept queries; bars in the queries'
    colours, in query order."""
    import altair as alt
    import pandas as pd
    df = pd.DataFrame(report.rows)
    df["label"] = [f"q{r['query']} {r['class']}" for r in report.rows]
    hexes = [hex_color(colors.get(r["query"], NO_OWNER)) for r in report.rows]
    base = alt.Chart(df).encode(
        y=alt.Y("label:N", sort=None, title=None, axis=alt.Axis(labelOverlap=False, labelLimit=220, labelFontSize=13)),
        color=alt.Color("label:N", scale=alt.Scale(domain=list(df["label"]), range=hexes), legend=None),
        tooltip=["query", "class", "kind", alt.Tooltip("mask logit:Q", format="+.3f"),
                 alt.Tooltip("p (all kept):Q", format=".3f"), alt.Tooltip("p (survivors):Q", format=".3f"), "role"])
    height = max(120, 32 * len(df) + 20)
    logit = base.mark_bar(stroke="black", strokeWidth=0.5).encode(
        x=alt.X("mask logit:Q", title="mask logit here")).properties(height=height)
    prob = base.mark_bar(stroke="black", strokeWidth=0.5).encode(
        x=alt.X("p (all kept):Q", title="softmax over the kept queries", scale=alt.Scale(domain=[0, 1]))
    ).properties(height=height)
    return logit, prob


def display_overlay(image: Image.Image, result, max_width: int = 1440) -> Image.Image:
    """The panoptic map over the photo at most `max_width` px wide (a phone photo at full size would
    cost tens of MB a threshold); map clicks back with `display_to_photo`."""
    photo = image if image.width <= max_width else fit_width(image, max_width)
    return panoptic_overlay(photo, result)


def display_to_photo(xy, display_size, photo_size) -> tuple[int, int]:
    """A pixel of the display-size picture -> the photo pixel under it. Sizes are (W, H)."""
    (dw, dh), (W, H) = display_size, photo_size
    return min(W - 1, int(xy[0] * W / dw)), min(H - 1, int(xy[1] * H / dh))


def photo_to_display(xy, photo_size, display_size) -> tuple[int, int]:
    (W, H), (dw, dh) = photo_size, display_size
    return min(dw - 1, int((xy[0] + 0.5) * dw / W)), min(dh - 1, int((xy[1] + 0.5) * dh / H))
