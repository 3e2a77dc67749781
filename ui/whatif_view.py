"""The what-if lab in the app: controls, results and the shareable experiment (a view over
`detr_viz.whatif`, which computes everything and caches it per trace).

One experiment per session (`st.session_state[EXP]`, a plain dict, so it survives page switches):
pages 4-7 each show the part of it that belongs to their step, the "What if" page all of it plus
occlusion, with its settings in the URL (`wi_*` query parameters, see `ui.whatif_url`). Every
result is drawn inside a bordered box under an orange "WHAT IF" badge, the changed picture with an
orange frame: it is never to be mistaken for the model's output. One Reset restores everything.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image, ImageOps

from detr_viz import whatif
from detr_viz.trace import kept_queries
from detr_viz.viz import fit_width
from detr_viz.whatif import pictures

from . import page, state
from .whatif_url import DEFAULTS, EXP, NOTES, URL_SEEN, experiment

BADGE = "WHAT IF — not the model's output"
FRAME = (255, 140, 0)                   # the orange frame of a changed picture
HALF = page.DISPLAY_WIDTH // 2          # width of a picture shown side by side
WHATIF_PAGE = "pages/9_What_if.py"
W = "wi_w_"                             # prefix of the lab's widget keys (restored from EXP when missing)
ATTENTION = {"none": "as traced", "uniform": "uniform (the budget spread evenly)",
             "query": "another query's maps", "shift": "shifted by a few cells"}
ONLY = {"both": "both (as traced)", "attention": "attention only (image features off)",
        "features": "features only (attention maps off)"}


# ---- the shared pieces ----------------------------------------------------------------------------
def badge() -> None:
    """The warning-coloured mark on every what-if result."""
    st.badge(BADGE, icon=":material/science:", color="orange")


def framed(image: Image.Image) -> Image.Image:
    """A changed picture with an orange frame (what the model did not output)."""
    return ImageOps.expand(image.convert("RGB"), border=max(4, image.width // 60), fill=FRAME)


def reset() -> None:
    """Restore everything: the experiment, the lab's widgets, its notes and its URL parameters."""
    ss = st.session_state
    ss[EXP] = dict(DEFAULTS)
    for key in [k for k in ss if isinstance(k, str) and k.startswith(W)]:
        del ss[key]
    ss.pop(NOTES, None)
    for key in [k for k in st.query_params if k.startswith("wi_")]:
        del st.query_params[key]
    ss[URL_SEEN] = {}


def reset_button(where: str) -> None:
    st.button("Reset the what-if lab", key=f"wi_reset_{where}", on_click=reset, icon=":material/restart_alt:",
              help="Switch everything back on, on every page: the model's own output again.")


def _keep(name: str, widget, *args, convert=lambda v: v, **kwargs):
    """A lab widget whose value lives in the experiment: restored from it when the widget is new
    (e.g. after a page switch), written back after every run."""
    exp, key = experiment(), W + name
    if key not in st.session_state:
        st.session_state[key] = convert(exp[name])
    value = widget(*args, key=key, **kwargs)
    exp[name] = value
    return value


def _sanitise(name: str, options: list, many: bool) -> None:
    """Drop values that are no longer options (another threshold, image or model) before drawing."""
    exp, key = experiment(), W + name
    if many:
        exp[name] = tuple(v for v in exp[name] if v in options)
        if key in st.session_state:
            st.session_state[key] = [v for v in st.session_state[key] if v in options]
    elif exp[name] not in options:
        exp[name] = options[0] if options else None
        st.session_state.pop(key, None)


def query_choice(ctx: state.Context, where: str) -> int:
    """The experiment's query (one for every page): kept queries first, by score."""
    pan = ctx.panoptic
    kept = [int(q) for q in pan.kept]
    options = kept + [q for q in np.argsort(-pan.scores).tolist() if q not in kept]
    _sanitise("q", options, many=False)
    return int(_keep("q", st.selectbox, "Query to experiment on", options,
                     format_func=lambda q: ("✓ " if q in kept else "") + page.query_label(ctx, q)))


# ---- mask interventions ------------------------------------------------------------------------------
def heads_controls(ctx: state.Context) -> None:
    """Heads off (zero or renormalised) and the attention replaced (uniform, another query's, shifted)."""
    t, exp = ctx.trace, experiment()
    M, N, (h, w) = t.config.nheads, t.config.num_queries, t.grid
    c1, c2 = st.columns(2)
    with c1:
        _sanitise("heads", list(range(M)), many=True)
        _keep("heads", st.multiselect, f"Heads switched off (0..{M - 1}, as in the tensor)", list(range(M)),
              convert=list, format_func=lambda m: f"head {m}")
        _keep("renorm", st.checkbox, "Renormalise the remaining heads (the query's budget stays 1)",
              help="Off: the heads' maps are set to zero and the query's attention sums to less than 1.")
    with c2:
        _keep("att", st.radio, "Attention maps", list(ATTENTION), format_func=ATTENTION.get)
        if exp["att"] == "query":
            _sanitise("att_q", list(range(N)), many=False)
            _keep("att_q", st.selectbox, "Borrow the maps of", list(range(N)),
                  format_func=lambda q: page.query_label(ctx, q))
        elif exp["att"] == "shift":
            _keep("dx", st.number_input, "Cells to the right (negative: left)", -(w - 1), w - 1, step=1)
            _keep("dy", st.number_input, "Cells down (negative: up)", -(h - 1), h - 1, step=1)
    st.caption("Heads are numbered from 0, as in the tensor (the pictures above count them from 1).")


def features_controls(ctx: state.Context) -> None:
    _keep("only", st.radio, "The mask head sees", list(ONLY), format_func=ONLY.get, horizontal=True)


def skips_controls(ctx: state.Context) -> None:
    _keep("skips", st.multiselect, "Skips switched off (the adapter adds nothing)", list(whatif.SKIPS),
          convert=list, format_func=lambda s: f"{s.capitalize()} (adapter{list(whatif.SKIPS).index(s) + 1})")


def mask_kwargs(ctx: state.Context) -> tuple[dict, list[str]]:
    """The experiment as keyword arguments of `whatif.mask`, made consistent (a request the
    library would refuse is narrowed, with a note saying what does not count)."""
    exp, M = experiment(), ctx.trace.config.nheads
    kw, notes = {}, []
    heads = sorted(int(m) for m in exp["heads"] if 0 <= int(m) < M)
    att = {"uniform": "uniform", "query": ("query", exp["att_q"]),
           "shift": ("shift", int(exp["dx"]), int(exp["dy"]))}.get(exp["att"])
    if att is not None and att[0] == "shift" and att[1:] == (0, 0):
        att = None
    if exp["only"] == "features":
        kw["attention_off"] = True
        if heads or att is not None:
            notes.append("Features only: every attention map is zero, so the heads switched off and the "
                         "replaced maps make no difference here.")
    else:
        if heads:
            kw["heads_off"] = heads
        if att is not None:
            kw["attention"] = att
        removed = heads or (att is not None and att[0] == "shift")
        if exp["renorm"] and removed and len(heads) < M:
            kw["renormalise"] = True
        elif exp["renorm"] and len(heads) == M:
            notes.append(f"All {M} heads are off: nothing is left to renormalise, so the maps are all zero.")
    if exp["only"] == "attention":
        kw["features_off"] = True
    if exp["skips"]:
        kw["skips_off"] = list(exp["skips"])
    return kw, notes


def mask_result(ctx: state.Context, q: int, only: tuple = ()) -> None:
    """Query q's mask with the experiment's mask interventions, or a hint if nothing is switched off.
    only: the parts this page changes (others set elsewhere are named, and still apply)."""
    kw, notes = mask_kwargs(ctx)
    for note in notes:
        st.caption(note)
    if not kw:
        st.caption("Nothing is switched off yet: the mask below would be the model's own. Change a setting "
                   "above to see what happens.")
        return
    try:
        r = whatif.mask(ctx.trace, q, **kw)
    except ValueError as e:
        st.warning(f"This experiment cannot be run: {e}. Change the settings above, or press Reset.")
        return
    t = ctx.trace
    with st.container(border=True):
        badge()
        st.markdown(f"**{r.sentence}**")
        c1, c2 = st.columns(2)
        c1.image(pictures.mask_overlay(t, r.original, HALF), width="stretch")
        c1.caption(f"The model's output: query {q}'s traced mask (logit > 0), {r.area_before:,} pixels at 1/4.")
        c2.image(framed(pictures.mask_overlay(t, r.changed, HALF)), width="stretch")
        c2.caption(f"WHAT IF: the changed mask, {r.area_after:,} pixels ({r.request.describe()}).")
        c3, c4 = st.columns(2)
        c3.image(pictures.change_picture(r.original, r.changed, HALF), width="stretch")
        c3.caption("The masks compared: grey in both, orange lost, blue gained.")
        c4.image(framed(pictures.diff_picture(r.diff, HALF)), width="stretch")
        big = float(r.diff.abs().max())
        c4.caption(f"Changed minus traced logits (purple lower, orange higher); largest change {big:.3g}.")
        m1, m2, m3, m4 = st.columns(4)
        m1.metric("IoU with the traced mask", f"{r.iou:.2f}")
        m2.metric("Share of the mask kept", f"{r.kept_share:.0%}")
        m3.metric("Mask pixels", f"{r.area_after:,}", delta=f"{r.area_after - r.area_before:+,}")
        m4.metric("Largest logit change", f"{big:.3g}")


def mask_lab(ctx: state.Context, where: str, title: str, intro: str, controls) -> None:
    """A page's mask lab: its controls, the experiment's query, the result, Reset, a link."""
    st.header(title)
    st.markdown(intro)
    q = query_choice(ctx, where)
    controls(ctx)
    mask_result(ctx, q)
    footer(where)


def footer(where: str) -> None:
    c1, c2 = st.columns(2)
    with c1:
        reset_button(where)
    page.link(WHATIF_PAGE, "The whole experiment on the What-if page (with a link to share)",
              icon=":material/science:", container=c2)


# ---- the sections of pages 4-7 ----------------------------------------------------------------------
def lab_heads(ctx: state.Context) -> None:
    """Page 4: heads on/off and the attention replaced."""
    mask_lab(ctx, "4", "What if? Switch heads off, replace the attention",
             "Each query hands the mask head its M attention maps. Switch some heads off (their maps set to "
             "zero), or replace the maps, and the mask head re-runs for this query with the model's own "
             "modules. Does the mask follow the attention?", heads_controls)


def lab_features(ctx: state.Context) -> None:
    """Page 5: features vs attention."""
    mask_lab(ctx, "5", "What if? Only the features, or only the attention",
             "The concat holds two parts: input_proj(Res5) (the same for every query) and the query's "
             "attention maps. Zero one of them and re-run the mask head for this query.", features_controls)


def lab_skips(ctx: state.Context) -> None:
    """Page 6: the skips."""
    mask_lab(ctx, "6", "What if? Drop the skips",
             "Set an adapter's output to zero, so that its backbone map (Res4, Res3 or Res2) adds nothing, and "
             "see how the mask coarsens.", skips_controls)


def merge_kwargs(ctx: state.Context, threshold: float) -> dict:
    exp, t = experiment(), ctx.trace
    kw = {}
    if exp["drop"]:
        kw["drop_queries"] = list(exp["drop"])
    if not exp["stuff"]:
        kw["stuff_merge"] = False
    if not exp["small"]:
        kw["small_filter"] = False
    if abs(threshold - t.threshold) > 1e-9:
        kw["threshold"] = threshold
    return kw


def merge_controls(ctx: state.Context, threshold: float) -> None:
    kept = kept_queries(ctx.trace["pred_logits"], threshold)
    _sanitise("drop", kept, many=True)
    c1, c2 = st.columns([2, 1])
    with c1:
        _keep("drop", st.multiselect, f"Kept queries to remove (kept at {threshold:.2f})", kept, convert=list,
              format_func=lambda q: page.query_label(ctx, q), max_selections=max(1, len(kept) - 1),
              disabled=len(kept) < 2, help="Who takes their pixels? (At least one query stays.)")
    with c2:
        _keep("stuff", st.checkbox, "Stuff merge on")
        _keep("small", st.checkbox, "Small-segment filter on")


def merge_result(ctx: state.Context, threshold: float) -> None:
    kw = merge_kwargs(ctx, threshold)
    if not kw:
        st.caption("Nothing is changed yet: the map below would be the model's own. Remove a query or switch "
                   "a step of the merge off above.")
        return
    try:
        m = whatif.merge(ctx.trace, **kw)
    except ValueError as e:
        st.warning(f"This experiment cannot be run: {e}. Change the settings above, or press Reset.")
        return
    with st.container(border=True):
        badge()
        st.markdown(f"**{m.sentence}**")
        panoptic_pair(m.original, m.changed, "The model's output: the panoptic map of the trace",
                      "WHAT IF: the changed panoptic map")
        c1, c2 = st.columns(2)
        c1.image(framed(pictures.owner_change_picture(m, HALF)), width="stretch")
        c1.caption("Pixels that changed owner, in the new owner's colour (the rest dimmed).")
        with c2:
            st.metric("Pixels that changed owner", f"{m.changed_share:.1%}")
            st.metric("Segments", len(m.changed.segments), delta=len(m.changed.segments) - len(m.original.segments))
        rows = [{"removed query": q, "pixels went to": page.query_label(ctx, o) if o >= 0 else "nobody",
                 "pixels": n} for q, went in m.taken_by.items() for o, n in went.items()]
        if rows:
            st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")


def panoptic_pair(original, changed, left: str, right: str) -> None:
    c1, c2 = st.columns(2)
    c1.image(fit_width(Image.fromarray(original.colorize()), HALF), width="stretch")
    c1.caption(left)
    c2.image(framed(fit_width(Image.fromarray(changed.colorize()), HALF)), width="stretch")
    c2.caption(right)


def lab_merge(ctx: state.Context) -> None:
    """Page 7: remove kept queries, the stuff merge or the small-segment filter off; the threshold
    slider at the top of the page is the lab's threshold."""
    t = ctx.trace
    threshold = ctx.threshold
    experiment()["thr"] = None if abs(threshold - t.threshold) < 1e-9 else threshold
    st.header("What if? Change the merge")
    st.markdown(f"Remove kept queries (who takes their pixels?), or switch off the stuff merge or the "
                f"small-segment filter. The threshold is the slider at the top of this page (now "
                f"{threshold:.2f}; the model's own {t.threshold:.2f}). The original is always the model's "
                "output at its own threshold.")
    merge_controls(ctx, threshold)
    merge_result(ctx, threshold)
    footer("7")

