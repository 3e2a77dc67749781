"""Step 5, the concatenation with "Res5", taken apart for teaching (pages/5_Concat_Res5.py).

What the code does (our MaskHead.forward, the equivalent of the official MaskHeadSmallConv):

    x = cat([src_proj.repeat_interleave(K, 0),            # (K, d, h, w)  input_proj(res5), same for all
             bbox_mask.flatten(0, 1) * attention_scale],  # (K, M, h, w)  this query's M attention maps
            dim=1)                                        # (K, d+M, h, w)

`src_proj` = input_proj(res5) is the projected backbone feature that ENTERED the encoder, not the
encoder output (memory). Every claim the page makes is checked here on the live tensors.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

from ..cache import cached
from ..viz import DIVERGING, SEQUENTIAL, grid, heatmap, load_font, size_at_width, to_numpy
from .common import display_image, grid_overlay, shape_str

FEATURE_EDGE = (0, 114, 178)      # Okabe-Ito blue: the d feature channels
ATTENTION_EDGE = (230, 159, 0)    # Okabe-Ito orange: the M attention channels

QUERIES_KEEP = 8                # stacks and pictures kept per trace: the last few queries


@dataclass
class ConcatStack:
    """One query's slice of mask_head.concat, split into its two parts, with live checks."""
    query: int
    other: int                      # a second query the stack is compared with
    d: int                          # feature channels (hidden size)
    M: int                          # attention heads
    grid: tuple                     # (h, w) the res5 grid
    stride: int                     # input pixels per grid cell: 32 (16 with DC5)
    res5_channels: int              # channels of backbone.res5 before input_proj
    scale: float                    # model.config.bbox_attention_scale
    n_queries: int                  # N: the official forward stacks all N queries
    traced: list                    # the queries traced through the mask head (rows of the stage)
    features: np.ndarray            # (d, h, w) channels 0..d-1 = input_proj(res5)
    attention: np.ndarray           # (M, h, w) channels d..d+M-1 = scale * bbox_attention[q]
    checks: list = field(default_factory=list)   # dicts: claim, compared, max_abs_diff, holds

    @property
    def channels(self) -> int:
        return self.d + self.M

    @property
    def full_forward_mb(self) -> float:
        """Size of the official all-queries concat, N x (d+M) x h x w float32, in MB."""
        return self.n_queries * self.channels * self.grid[0] * self.grid[1] * 4 / 1e6

    def head_share(self) -> np.ndarray:
        """(M,) each head's share of the query's attention (the M maps sum to `scale` together)."""
        total = self.attention.sum()
        return self.attention.reshape(self.M, -1).sum(1) / (total if total else 1.0)

    def ranges(self) -> list[dict]:
        rows = []
        for part, chans, x in (("input_proj(Res5) features", f"0 – {self.d - 1}", self.features),
                               (f"attention maps × {self.scale:g}", f"{self.d} – {self.channels - 1}",
                                self.attention)):
            rows.append({"part": part, "channels": chans, "min": float(x.min()), "max": float(x.max()),
                         "mean |value|": float(np.abs(x).mean())})
        return rows


def other_query(trace, q: int) -> int:
    """A second query to compare with: an already traced one if possible (no extra mask-head run)."""
    for o in trace.mask_queries:
        if o != q:
            return int(o)
    return (q + 1) % trace.config.num_queries


@cached(keep=QUERIES_KEEP)
def concat_stack(trace, q: int, other: int | None = None) -> ConcatStack:
    """Split query q's concat into features and attention maps and check what they are."""
    cfg = trace.config
    d, M = cfg.hidden_dim, cfg.nheads
    other = other_query(trace, q) if other is None else int(other)
    x = trace.query("mask_head.concat", q)                       # (d+M, h, w)
    y = trace.query("mask_head.concat", other)                   # (d+M, h, w)
    src_proj = trace["input_proj"][0]                            # (d, h, w) = input_proj(res5)
    memory = trace["memory"][0]                                  # (d, h, w) encoder output
    maps = trace["bbox_attention"][0, q]                         # (M, h, w), joint softmax
    scale = float(cfg.bbox_attention_scale)
    diff = lambda a, b: float((a.float() - b.float()).abs().max())
    checks = [
        {"claim": f"channels 0–{d - 1} are input_proj(Res5)", "compared": "input_proj",
         "max_abs_diff": diff(x[:d], src_proj), "holds": diff(x[:d], src_proj) == 0.0},
        {"claim": f"channels 0–{d - 1} are NOT the encoder output", "compared": "memory",
         "max_abs_diff": diff(x[:d], memory), "holds": diff(x[:d], memory) > 0.0},
        {"claim": f"channels 0–{d - 1} are the same for query {q} and query {other}",
         "compared": f"query {other}, channels 0–{d - 1}",
         "max_abs_diff": diff(x[:d], y[:d]), "holds": diff(x[:d], y[:d]) == 0.0},
        {"claim": f"channels {d}–{d + M - 1} are query {q}'s attention maps × {scale:g}",
         "compared": f"bbox_attention[{q}] × {scale:g}",
         "max_abs_diff": diff(x[d:], maps * scale), "holds": diff(x[d:], maps * scale) <= 1e-6 * max(1.0, scale)},
        {"claim": f"channels {d}–{d + M - 1} differ between query {q} and query {other}",
         "compared": f"query {other}, channels {d}–{d + M - 1}",
         "max_abs_diff": diff(x[d:], y[d:]), "holds": diff(x[d:], y[d:]) > 0.0},
    ]
    total = float(maps.double().sum())
    checks.append({"claim": f"the {M} maps of query {q} sum to 1 together (one softmax over heads and positions)",
                   "compared": "sum of bbox_attention[q]", "max_abs_diff": abs(total - 1.0),
                   "holds": abs(total - 1.0) < 1e-4})
    return ConcatStack(query=int(q), other=other, d=d, M=M, grid=tuple(x.shape[-2:]),
                       res5_channels=int(trace.shape("backbone.res5")[1]), scale=scale,
                       n_queries=int(cfg.num_queries), traced=list(trace.mask_queries),
                       features=to_numpy(x[:d]), attention=to_numpy(x[d:]), checks=checks,
                       stride=int(cfg.stride))


def feature_channels(stack: ConcatStack, n: int = 8, how: str = "variance") -> list[int]:
    """Which of the d feature channels to show: the n with the largest spatial variance (the most
    structured ones), the first n, or n evenly spaced ones."""
    n = max(1, min(n, stack.d))
    if how == "first":
        return list(range(n))
    if how == "spaced":
        return sorted({int(round(v)) for v in np.linspace(0, stack.d - 1, n)})
    var = stack.features.reshape(stack.d, -1).var(1)
    return sorted(np.argsort(-var)[:n].tolist())


def feature_grid(stack: ConcatStack, channels, tile: int = 220, ncols: int = 4) -> Image.Image:
    """Chosen feature channels (signed: diverging colours, each on its own symmetric scale)."""
    size = size_at_width(stack.grid, tile)
    tiles = [heatmap(stack.features[c], size, DIVERGING, symmetric=True) for c in channels]
    return grid(tiles, ncols, labels=[f"ch {c}" for c in channels], label_height=22)


def attention_grid(stack: ConcatStack, tile: int = 220, ncols: int = 4) -> Image.Image:
    """The M attention channels on ONE shared scale (0 .. the largest value of the M maps), so the
    heads that carry most of the query's attention stand out."""
    size = size_at_width(stack.grid, tile)
    vmax = float(stack.attention.max()) or 1.0
    share = stack.head_share()
    tiles = [heatmap(stack.attention[m], size, SEQUENTIAL, vmin=0.0, vmax=vmax) for m in range(stack.M)]
    labels = [f"ch {stack.d + m} = head {m + 1} ({100 * share[m]:.0f} %)" for m in range(stack.M)]
    return grid(tiles, ncols, labels=labels, label_height=22)


def attention_overlay(trace, stack: ConcatStack, width: int = 640) -> Image.Image:
    """The sum of the M maps (where the query looks, all heads together) over the photo, each cell
    drawn on the patch of the photo it covers."""
    return grid_overlay(trace, stack.attention.sum(0), display_image(trace, width), alpha=0.6, vmin=0.0)


def stack_picture(stack: ConcatStack, channels, tile: int = 300, step: tuple[int, int] = (20, 13)) -> Image.Image:
    """The stack as a deck of sheets: a few of the d feature sheets (blue edges), a gap for the rest,
    then the M attention sheets (orange edges) in front, with the channel ranges written beside."""
    sw, sh = size_at_width(stack.grid, tile)
    dx, dy = step
    sheets = [("f", c) for c in channels]
    n_back = len(sheets) + 2 + stack.M                       # 2 sheet-widths of gap for "..."
    margin_top, margin_right = 56, 330
    W = sw + dx * n_back + margin_right + 20
    H = sh + dy * n_back + margin_top + 46
    out = Image.new("RGB", (W, H), (255, 255, 255))
    draw = ImageDraw.Draw(out)
    font, small = load_font(20), load_font(16)
    draw.text((10, 8), f"query {stack.query}: {shape_str((stack.channels, *stack.grid))} "
              f"(d + M = {stack.d} + {stack.M} channels)", fill=(20, 20, 20), font=font)
    fmax = max(float(np.abs(stack.features[list(channels)]).max()), 1e-12)
    amax = float(stack.attention.max()) or 1.0
    pos = 0
    first_attention_xy = None
    for kind, c in sheets + [("a", m) for m in range(stack.M)]:
        if kind == "a" and first_attention_xy is None:
            # the gap: dots standing for the feature channels not drawn
            for k in range(3):
                cx = 10 + (pos + 0.7 * k) * dx + sw - 4
                cy = margin_top + (pos + 0.7 * k) * dy + 2
                draw.ellipse((cx - 4, cy - 4, cx + 4, cy + 4), fill=FEATURE_EDGE)
            pos += 2
        x0, y0 = 10 + pos * dx, margin_top + pos * dy
        if kind == "f":
            sheet = heatmap(stack.features[c], (sw, sh), DIVERGING, vmin=-fmax, vmax=fmax)
            edge = FEATURE_EDGE
        else:
            sheet = heatmap(stack.attention[c], (sw, sh), SEQUENTIAL, vmin=0.0, vmax=amax)
            edge = ATTENTION_EDGE
            if first_attention_xy is None:
                first_attention_xy = (x0, y0)
        out.paste(sheet, (x0, y0))
        draw.rectangle((x0, y0, x0 + sw - 1, y0 + sh - 1), outline=edge, width=3)
        pos += 1
    last_xy = (x0, y0)
    tx = last_xy[0] + sw + 16
    draw.text((tx, margin_top + 4), f"channels 0 – {stack.d - 1}", fill=FEATURE_EDGE, font=font)
    draw.text((tx, margin_top + 30), f"input_proj(Res5): {stack.d} feature maps,", fill=(40, 40, 40), font=small)
    draw.text((tx, margin_top + 50), "the SAME for every query", fill=(40, 40, 40), font=small)
    draw.text((tx, margin_top + 70), f"({len(channels)} drawn, the rest are the dots)", fill=(90, 90, 90), font=small)
    ay = last_xy[1] - 20
    draw.text((tx, ay), f"channels {stack.d} – {stack.channels - 1}", fill=ATTENTION_EDGE, font=font)
    draw.text((tx, ay + 26), f"the {stack.M} box-attention maps", fill=(40, 40, 40), font=small)
    draw.text((tx, ay + 46), f"of query {stack.query} only (front: head {stack.M})", fill=(40, 40, 40), font=small)
    draw.text((10, H - 30),
              f"each sheet: {shape_str(stack.grid)} = the res5 grid (1/{stack.stride} of the input)",
              fill=(60, 60, 60), font=small)
    return out


# ---- what the page draws, cached per trace (the last QUERIES_KEEP queries) ----------------------------
@cached(keep=QUERIES_KEEP)
def deck_picture(trace, q: int, how: str = "variance") -> Image.Image:
    """Query q's stack as a deck of sheets: 6 feature channels chosen by `how`, then its attention maps."""
    stack = concat_stack(trace, q)
    return stack_picture(stack, feature_channels(stack, 8, how)[:6])


@cached(keep=QUERIES_KEEP)
def feature_picture(trace, q: int, how: str = "variance") -> Image.Image:
    """8 feature channels of query q's stack (the same for every query), chosen by `how`."""
    stack = concat_stack(trace, q)
    return feature_grid(stack, feature_channels(stack, 8, how))


@cached(keep=QUERIES_KEEP)
def attention_picture(trace, q: int) -> Image.Image:
    """The M attention channels of query q's stack, on one shared scale."""
    return attention_grid(concat_stack(trace, q))


@cached(keep=QUERIES_KEEP)
def query_attention_overlay(trace, q: int) -> Image.Image:
    """The sum of query q's M attention maps over the photo."""
    return attention_overlay(trace, concat_stack(trace, q))
