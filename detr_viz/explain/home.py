"""The Home page: the whole pipeline as one diagram with this image's live shapes, and the timings.

The diagram follows the panoptic-head figure of the DETR paper (Carion et al. 2020, Fig. 8),
preceded by the detector: a U-shaped flow. The top row runs left to right (image -> backbone ->
input_proj -> encoder -> decoder); the bottom row comes back right to left, each block under the
block whose output it takes (box attention under encoder and decoder, the concat under input_proj,
the FPN-style CNN under the backbone), and ends with the panoptic map under the input image.
"""
from __future__ import annotations

from html import escape

from ..cache import cached
from ..stages import STEPS
from ..viz import panoptic_overlay
from .common import DISPLAY_WIDTH, dims, display_image, shape_str
from .step7_merge import merged

# Okabe-Ito colours (readable with every common colour-vision deficiency), lightened for fills.
STEP_COLORS = {1: "#E69F00", 2: "#56B4E9", 3: "#009E73", 4: "#CC79A7", 5: "#0072B2", 6: "#D55E00", 7: "#F0E442"}
STEP_FILLS = {1: "#FBE3B0", 2: "#D4ECFA", 3: "#BFE8DB", 4: "#F2D9E8", 5: "#BFDCEF", 6: "#F5D4BF", 7: "#FBF8C6"}
ALL_TENSORS = 8              # the page after the seven steps: every stage in one table
# Inline, so that the page's own link style (underlined) does not reach into the diagram.
LINK_STYLE = "text-decoration:none;cursor:pointer"

# Timing keys of `trace.timings` -> (label, step).
TIMING_LABELS = {
    "backbone": ("CNN backbone", 1), "input_proj": ("input_proj", 1), "encoder": ("encoder", 2),
    "decoder": ("decoder", 3), "heads": ("class + box heads", 3), "bbox_attention": ("box attention", 4),
    "mask_head": ("mask head (concat + FPN)", 6), "merge": ("panoptic merge", 7),
}


def shapes(trace) -> dict:
    """The live shape written on every arrow of the diagram (batch dimension left out)."""
    D = dims(trace)
    H4, W4 = trace.shape("pred_masks")[-2:]
    res = {k: shape_str(trace.shape(f"backbone.res{k}")[1:]) for k in (2, 3, 4, 5)}
    return {
        "image": shape_str((3, D.H0, D.W0)),
        "input": shape_str((3, D.H, D.W)),
        "res5": res[5], "res4": res[4], "res3": res[3], "res2": res[2],
        "proj": shape_str((D.d, D.h, D.w)),
        "memory": shape_str((D.d, D.h, D.w)),
        "queries": shape_str((D.N, D.d)),
        "box_embeddings": shape_str((D.d, D.N)),
        "classes": shape_str((D.N, D.C + 1)),
        "boxes": shape_str((D.N, 4)),
        "maps": shape_str((D.N, D.M, D.h, D.w)),
        "concat": shape_str((D.N, D.d + D.M, D.h, D.w)),
        "masks": shape_str((D.N, H4, W4)),
        "panoptic": shape_str((D.H0, D.W0)),
    }


ROW1, ROW2, BH, LH = 110, 390, 70, 18    # top of row 1, top of row 2, box height, text line height
MID1, MID2 = ROW1 + BH / 2, ROW2 + BH / 2
SVG_STYLE = ("<style>.t{font:600 19px sans-serif;fill:#111;text-anchor:middle}"
             ".s{font:15px sans-serif;fill:#222;text-anchor:middle}"
             ".a{font:600 15px monospace;fill:#000}.n{font:14px sans-serif;fill:#333}"
             "a{cursor:pointer;text-decoration:none}a text{text-decoration:none}"
             "a:hover rect{stroke-width:4}</style>")
SVG_DEFS = ('<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
            'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#333"/></marker></defs>')


class _Diagram:
    """SVG elements of the pipeline diagram: boxes (a step's box links to its page), arrows, labels."""

    def __init__(self, links: dict):
        self.links, self.out = links, []

    def box(self, x, y, w, title, sub, step=None, kind="op", target=None):
        fill = STEP_FILLS.get(step, "#FFFFFF") if kind == "op" else "#FFFFFF"
        stroke = STEP_COLORS.get(step, "#555555") if kind == "op" else "#777777"
        dash = ' stroke-dasharray="5 3"' if kind == "data" else ""
        if kind == "table":
            fill, stroke = "#F3F3F3", "#555555"
        badge = f"{step} · " if step and kind == "op" else ""
        tip = f"<title>{escape(STEPS[step - 1].title + ': ' + STEPS[step - 1].summary)}</title>" if step else ""
        body = (f'<rect x="{x}" y="{y}" width="{w}" height="{BH}" rx="9" fill="{fill}" stroke="{stroke}" '
                f'stroke-width="2.4"{dash}/>'
                f'<text x="{x + w / 2}" y="{y + 30}" class="t" style="{LINK_STYLE}">{escape(badge + title)}</text>'
                f'<text x="{x + w / 2}" y="{y + 54}" class="s" style="{LINK_STYLE}">{escape(sub)}</text>{tip}')
        href = self.links.get(target if target is not None else step)
        if href:
            body = f'<a href="{escape(href)}" target="_self" style="{LINK_STYLE}">{body}</a>'
        self.out.append(body)

    def arrow(self, points, dashed=False):
        pts = " ".join(f"{px},{py}" for px, py in points)
        dash = ' stroke-dasharray="7 5"' if dashed else ""
        self.out.append(f'<polyline points="{pts}" fill="none" stroke="#333" stroke-width="2"{dash} '
                        f'marker-end="url(#arrow)"/>')

    def label(self, x, y, lines, anchor="middle"):
        """Text lines from y down; a line starting with '=' is a live shape (bold monospace)."""
        for i, text in enumerate(lines):
            cls, text = ("a", text[1:]) if text.startswith("=") else ("n", text)
            self.out.append(f'<text x="{x}" y="{y + LH * i}" class="{cls}" text-anchor="{anchor}">'
                            f'{escape(text)}</text>')


def pipeline_svg(trace, links: dict | None = None) -> str:
    """The pipeline as an SVG string; `links` maps a step number (1..7, 8 = all tensors) to the
    URL its boxes link to (opened with target="_self")."""
    svg = _Diagram(links or {})
    D, s = dims(trace), shapes(trace)
    _detector_row(svg, D, s)
    _panoptic_row(svg, D, s)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 -4 1160 {ROW2 + 130 + BH + 8}" width="100%" '
            f'role="img" aria-label="The DETR panoptic pipeline with the live tensor shapes of this image">'
            f'{SVG_STYLE}{SVG_DEFS}{"".join(svg.out)}</svg>')


def _detector_row(svg: _Diagram, D, s: dict) -> None:
    """Row 1: the detector, left to right (image, backbone, input_proj, encoder, decoder)."""
    cnn = D.backbone.replace("resnet", "ResNet-") + (" DC5" if D.stride == 16 else "")
    svg.box(5, ROW1, 140, "Image", s["image"], kind="data")
    svg.box(205, ROW1, 185, "CNN backbone", cnn, 1)
    svg.box(445, ROW1, 170, "input_proj", "1x1 conv", 1)
    svg.box(690, ROW1, 170, "Encoder", _plural(D.enc_layers, "layer") + ", + positions", 2)   # added in every layer
    svg.box(940, ROW1, 180, "Decoder", _plural(D.dec_layers, "layer") + ", class + box", 3)
    svg.box(950, 0, 170, "object queries", s["queries"], kind="data", target=3)
    for (x0, x1), name, shape in (((145, 205), "resized input", s["input"]), ((390, 445), "Res5", s["res5"]),
                                  ((615, 690), "input_proj(Res5)", s["proj"]), ((860, 940), "memory", s["memory"])):
        svg.arrow([(x0, MID1), (x1 - 2, MID1)])
        svg.label((x0 + x1) / 2, ROW1 - 30, (name, "=" + shape))
    svg.arrow([(1035, BH), (1035, ROW1 - 2)])                # the queries enter the decoder from above


def _panoptic_row(svg: _Diagram, D, s: dict) -> None:
    """Row 2: the panoptic head, right to left (box attention, concat, FPN, merge), and what feeds it."""
    svg.box(690, ROW2, 430, "Multi-head attention", f"box attention: {D.M} heads, one softmax over heads and cells", 4)
    svg.box(445, ROW2, 170, "Concat", "with input_proj(Res5)", 5)
    svg.box(205, ROW2, 185, "FPN-style CNN", "upsample + Res4..Res2", 6)
    svg.box(5, ROW2, 140, "Merge", "pixel-wise argmax", 7)
    svg.box(5, ROW2 + 130, 140, "Panoptic map", s["panoptic"], kind="data", target=7)
    svg.box(950, ROW2 + 130, 170, "All tensors", "every stage, one table", kind="table", target=ALL_TENSORS)
    down_y = ROW1 + BH + 34
    for x, lines, dashed in (
            (775, ("encoded image", "=" + s["memory"], f"d x H/{D.stride} x W/{D.stride}"), False),
            (1030, ("box embeddings", "=" + s["box_embeddings"], "hs[-1], d x N"), False),
            (530, ("input_proj(Res5)", "=" + s["proj"]), False),
            (297, ("Res4, Res3, Res2", "=" + s["res4"], "=" + s["res3"], "=" + s["res2"]), True)):
        svg.arrow([(x, ROW1 + BH), (x, ROW2 - 2)], dashed=dashed)
        svg.label(x + 8, down_y, lines, anchor="start")
    for (x0, x1), lines in (((690, 615), ("=" + s["maps"], "attention maps", f"N x M x H/{D.stride} x W/{D.stride}")),
                            ((445, 390), ("=" + s["concat"], "d + M channels")),
                            ((205, 145), ("=" + s["masks"], "mask logits"))):
        svg.arrow([(x0, MID2), (x1 + 2, MID2)])
        svg.label((x0 + x1) / 2, ROW2 + BH + 24, lines)
    svg.arrow([(75, ROW2 + BH), (75, ROW2 + 128)])


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def timing_rows(trace) -> list[dict]:
    """One row per timed block, in pipeline order: block, step, seconds, share of the total."""
    total = trace.total_time or 1.0
    rows = []
    for key, (label, step) in TIMING_LABELS.items():
        if key in trace.timings:
            sec = float(trace.timings[key])
            rows.append({"block": label, "step": step, "seconds": sec, "share": sec / total})
    return rows


def timings_figure(trace):
    """A horizontal bar chart (plotly) of the seconds each block took, coloured by step."""
    import plotly.graph_objects as go
    rows = timing_rows(trace)
    fig = go.Figure(go.Bar(
        x=[r["seconds"] for r in rows], y=[f"{r['step']} · {r['block']}" for r in rows], orientation="h",
        marker_color=[STEP_COLORS[r["step"]] for r in rows],
        text=[f"{r['seconds'] * 1000:.0f} ms ({r['share']:.0%})" for r in rows], textposition="outside",
        hovertemplate="%{y}: %{x:.3f} s<extra></extra>", cliponaxis=False))
    longest = max((r["seconds"] for r in rows), default=1.0)
    fig.update_layout(height=60 + 34 * len(rows), margin=dict(l=10, r=30, t=10, b=40),
                      xaxis=dict(title="seconds", range=[0, longest * 1.5]), yaxis=dict(autorange="reversed"),
                      font=dict(size=15))
    return fig


@cached
def panoptic_picture(trace, threshold: float, width: int = DISPLAY_WIDTH):
    """The merge at `threshold` over the photo at a display width."""
    return panoptic_overlay(display_image(trace, width), merged(trace, threshold))
