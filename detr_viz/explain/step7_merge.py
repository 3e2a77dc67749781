"""Step 7, the panoptic merge, taken apart for teaching (pages/7_Merge.py).

Everything here reads the intermediate results of `PanopticResult` (winner maps before and after
the stuff merge and after the small-segment loop, the merges, the drops) and the traced mask
logits; nothing re-implements the merge except where a page needs one pixel's numbers
(`step7_merge_pixel.pixel_report`), which is checked against the merge's own maps.

Sizes: h4 x w4 = the mask grid (1/4 of the network input), h x w = the processed size (the network
input, where the official code takes the argmax), H_t x W_t = the target size (the photo).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from ..cache import cached
from ..postprocess import instance_color
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
    r, g, b = (int(v) for v in rgb)
    return f"#{r:02x}{g:02x}{b:02x}"


def display_overlay(image: Image.Image, result, max_width: int = 1440) -> Image.Image:
    """The panoptic map over the photo at most `max_width` px wide (a phone photo at full size would
    cost tens of MB a threshold); map clicks back with `display_to_photo`."""
    photo = image if image.width <= max_width else fit_width(image, max_width)
    return panoptic_overlay(photo, result)


# ---------------------------------------------------------------------------------------------
# the merge at a threshold, and what the page draws from it, cached per trace
# ---------------------------------------------------------------------------------------------
MERGES_KEEP = 8                 # merges kept per trace (thresholds, LRU)
VIEWS_KEEP = 4                  # each picture or table of the Merge page: its last few thresholds
WINNER_MAPS = ("before_merge", "after_merge", "final")     # PanopticResult.winner_<name>


@cached(keep=MERGES_KEEP)
def merged(trace, threshold: float):
    """The merge at `threshold`: the trace's own merge at its own threshold, else a new one."""
    threshold = round(float(threshold), 4)
    return trace.panoptic if abs(threshold - trace.threshold) < 1e-9 else trace.merge(threshold)


@cached(keep=VIEWS_KEEP)
def colors_at(trace, threshold: float) -> dict[int, tuple[int, int, int]]:
    return query_colors(merged(trace, threshold), trace.categories)


@cached(keep=VIEWS_KEEP)
def filter_rows_at(trace, threshold: float) -> list[dict]:
    return filter_rows(merged(trace, threshold), trace.categories)


@cached(keep=VIEWS_KEEP)
def legend_at(trace, threshold: float, width: int = 720) -> Image.Image:
    return query_legend(merged(trace, threshold), trace.categories, colors_at(trace, threshold), width=width)


@cached
def network_input_picture(trace, width: int) -> Image.Image:
    """The network input (the resized photo) at a display width: the background of the winner maps."""
    return fit_width(trace.pre.resized_image, width)


@cached(keep=VIEWS_KEEP * len(WINNER_MAPS))
def owner_picture_at(trace, threshold: float, stage: str, width: int) -> Image.Image:
    """The winner map `winner_<stage>` (one of WINNER_MAPS) over the network input."""
    result = merged(trace, threshold)
    return owner_picture(getattr(result, f"winner_{stage}"), colors_at(trace, threshold), width,
                         network_input_picture(trace, width))


@cached(keep=VIEWS_KEEP * 2)
def changed_picture_at(trace, threshold: float, before: str, after: str, width: int) -> Image.Image:
    """Pixels whose owner differs between winner maps `before` and `after` (names in WINNER_MAPS)."""
    result = merged(trace, threshold)
    return changed_picture(getattr(result, f"winner_{before}"), getattr(result, f"winner_{after}"),
                           colors_at(trace, threshold), width, network_input_picture(trace, width))


@cached(keep=VIEWS_KEEP)
def reassignments_at(trace, threshold: float) -> list[dict]:
    """Pixels moved by the stuff merge, by (from query, to query)."""
    result = merged(trace, threshold)
    return reassignments(result.winner_before_merge, result.winner_after_merge)


@cached(keep=VIEWS_KEEP)
def fate_of_dropped_at(trace, threshold: float) -> list[dict]:
    return fate_of_dropped(merged(trace, threshold))


@cached(keep=VIEWS_KEEP)
def confidence_map_at(trace, threshold: float) -> np.ndarray:
    return confidence_map(trace, merged(trace, threshold))


@cached(keep=VIEWS_KEEP)
def confidence_picture_at(trace, threshold: float, width: int) -> Image.Image:
    return confidence_picture(confidence_map_at(trace, threshold), width)


@cached(keep=VIEWS_KEEP)
def quarter_map_at(trace, threshold: float) -> QuarterMap:
    return quarter_map(trace, merged(trace, threshold))


@cached(keep=VIEWS_KEEP)
def quarter_picture_at(trace, threshold: float, width: int) -> Image.Image:
    return owner_picture(quarter_map_at(trace, threshold).owner, colors_at(trace, threshold), width,
                         network_input_picture(trace, width))


@cached(keep=VIEWS_KEEP)
def display_overlay_at(trace, threshold: float, max_width: int = 1440) -> Image.Image:
    return display_overlay(trace.image, merged(trace, threshold), max_width)
