"""Step 7, one pixel of the merge (pages/7_Merge.py, "Click a pixel: why this label?"): every kept
query's mask logit and softmax probability at a photo pixel, the official resizes one pixel at a
time, and the mapping between the photo and its display picture.

Sizes: h4 x w4 = the mask grid, h x w = the processed size (the network input, where the official
code takes the argmax), H_t x W_t = the target size (the photo).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from ..postprocess import SMALL_AREA
from .common import shape_str
from .step7_merge import NO_OWNER, hex_color, nearest_index, survivors


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

    rows = _query_rows(result, cats, kept, logits, p_all, p_alive, first, final, dropped)
    rep = PixelReport((x, y), (px, py), rows, first, after, final, seg, [], exact)
    rep.steps = _steps(trace, result, cats, rep, kept, logits, p_all, alive, dropped)
    return rep


def _query_rows(result, cats, kept, logits, p_all, p_alive, first, final, dropped) -> list[dict]:
    """One row per kept query: its class, mask logit, both softmax probabilities and its role here."""
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
    return rows


def _steps(trace, result, cats, rep: PixelReport, kept, logits, p_all, alive, dropped) -> list[str]:
    """Why the pixel got its label, in markdown: first argmax, stuff merge, small-segment loop, final."""
    (x, y), (px, py) = rep.target_xy, rep.processed_xy
    first, after, seg = rep.first, rep.after_merge, rep.segment
    h, w = result.processed_size
    name = lambda q: f"query {q} ({cats.label(int(result.labels[q]))})"
    K = len(kept)
    i_first = kept.index(first)
    h4, w4 = trace.shape("pred_masks")[-2:]
    steps = [f"Photo pixel (x={x}, y={y}) is pixel (x={px}, y={py}) of the {shape_str((h, w))} network input "
             f"(height x width), where the merge compares the {K} kept masks (bilinearly stretched from {shape_str((h4, w4))}).",
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
    steps.append(_small_segment_step(result, rep, kept, logits, alive, dropped, name))
    if seg is not None:
        steps.append(f"**Final:** segment {seg['id']}, *{seg['name']}* ({'thing' if seg['isthing'] else 'stuff'}), "
                     f"{name(seg['query'])}, class score {seg['score']:.3f}, area {seg['area']:,} px.")
    if not rep.exact:
        steps.append("(The recomputed logits are a near tie here; the colours follow the merge's own map.)")
    return steps


def _small_segment_step(result, rep: PixelReport, kept, logits, alive, dropped, name) -> str:
    """Step 3 of the explanation: what the small-segment loop did at this pixel."""
    first, after, final = rep.first, rep.after_merge, rep.final
    if not result.dropped:
        return (f"**3. Small-segment loop:** no segment has {SMALL_AREA} px or fewer, so nothing is dropped and "
                f"{name(final)} keeps the pixel.")
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
    return text


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


def display_to_photo(xy, display_size, photo_size) -> tuple[int, int]:
    """A pixel of the display-size picture -> the photo pixel under it. Sizes are (W, H)."""
    (dw, dh), (W, H) = display_size, photo_size
    return min(W - 1, int(xy[0] * W / dw)), min(H - 1, int(xy[1] * H / dh))


def photo_to_display(xy, photo_size, display_size) -> tuple[int, int]:
    (W, H), (dw, dh) = photo_size, display_size
    return min(dw - 1, int((xy[0] + 0.5) * dw / W)), min(dh - 1, int((xy[1] + 0.5) * dh / H))
