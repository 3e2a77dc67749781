"""The sections of the What-if page (pages/9_What_if.py): every mask intervention for one query, the
merge changes at the lab's own threshold, and occlusion with progress; the experiment is read from
and written to the URL (`ui.whatif_url`). The widgets and result boxes are those of `ui.whatif_view`."""
from __future__ import annotations

import streamlit as st

from detr_viz import whatif
from detr_viz.viz import fit_width
from detr_viz.whatif import pictures

from . import state
from .whatif_url import NOTES, experiment, from_url, to_url
from .whatif_view import (
    HALF,
    W,
    badge,
    features_controls,
    framed,
    heads_controls,
    mask_result,
    merge_controls,
    merge_result,
    panoptic_pair,
    query_choice,
    reset_button,
    skips_controls,
)


def intro(ctx: state.Context) -> None:
    """The URL's experiment (if new), what the lab is, its notes, and Reset."""
    from_url(ctx.trace)
    st.markdown(
        "Students learn what a part does by breaking it. Here every part of DETR's mask step can be switched off "
        "for one query, and the merge and the photo changed; each result is computed exactly, by the model's "
        "own modules, from the tensors of the trace. The same settings appear on pages 4 to 7, next to what "
        "they change.")
    st.markdown("Everything under the orange badge below is an **experiment**, not what the model output:")
    badge()
    for note in st.session_state.get(NOTES, []):
        st.warning(note)
    st.caption("The address bar holds this experiment (the `wi_…` parameters): copy it to share it.")
    reset_button("9")


def mask(ctx: state.Context) -> None:
    """One query's mask with every mask intervention."""
    st.header("One query's mask")
    q = query_choice(ctx, "9")
    st.subheader("Heads and attention maps (page 4)")
    heads_controls(ctx)
    st.subheader("Features vs. attention (page 5)")
    features_controls(ctx)
    st.subheader("Skips (page 6)")
    skips_controls(ctx)
    mask_result(ctx, q)


def merge(ctx: state.Context) -> None:
    """The merge with the experiment's changes, at the lab's own threshold."""
    t, exp = ctx.trace, experiment()
    st.header("The merge (page 7)")
    default = t.threshold if exp["thr"] is None else float(exp["thr"])
    if W + "thr" not in st.session_state:
        st.session_state[W + "thr"] = round(default, 2)
    threshold = float(st.slider(f"Score threshold of the merge (the model's own: {t.threshold:.2f})", 0.0, 0.99,
                                step=0.01, key=W + "thr"))
    exp["thr"] = None if abs(threshold - round(t.threshold, 2)) < 1e-9 else threshold
    threshold = t.threshold if exp["thr"] is None else threshold
    merge_controls(ctx, threshold)
    merge_result(ctx, threshold)


def occlusion(ctx: state.Context) -> None:
    """Grey out a rectangle of the photo and re-run DETR (with progress): what changes?"""
    t, exp = ctx.trace, experiment()
    H, Wd = t.pre.original_size
    st.header("Occlusion: grey out part of the photo")
    st.markdown("A full re-run of DETR on the photo with a grey rectangle (a few seconds for the R50 on a "
                "laptop CPU; the progress shows below). Then the panoptic maps and the kept queries are compared.")
    box = exp["box"] or (Wd // 4, H // 4, max(Wd // 2, Wd // 4 + 1), max(H // 2, H // 4 + 1))
    c1, c2 = st.columns(2)
    xs = c1.slider("x range (photo pixels)", 0, max(Wd, 1), (box[0], box[2]), key=W + "box_x")
    ys = c2.slider("y range (photo pixels)", 0, max(H, 1), (box[1], box[3]), key=W + "box_y")
    wanted = (int(xs[0]), int(ys[0]), int(xs[1]), int(ys[1]))
    if st.button("Grey it out and re-run DETR", key="wi_occlude", icon=":material/play_arrow:",
                 disabled=wanted[0] >= wanted[2] or wanted[1] >= wanted[3]):
        exp["box"] = wanted
    if not exp["box"]:
        st.caption("Choose a rectangle and press the button.")
        return
    bar = st.progress(0.0, text="Re-running DETR on the occluded photo ...")
    try:
        o = whatif.occlude(t, exp["box"], progress=lambda k, text: bar.progress(min(k / 7, 1.0),
                                                                                 text=f"Step {k} of 7: {text}"))
    except ValueError as e:
        st.warning(f"This occlusion cannot be run: {e}. Choose another rectangle, or press Reset.")
        return
    finally:
        bar.empty()
    occlusion_result(ctx, o)


def occlusion_result(ctx: state.Context, o) -> None:
    with st.container(border=True):
        badge()
        st.markdown(f"**{o.sentence}**")
        c1, c2 = st.columns(2)
        c1.image(fit_width(ctx.trace.image.convert("RGB"), HALF), width="stretch")
        c1.caption("The model's input: the photo.")
        c2.image(framed(fit_width(o.image, HALF)), width="stretch")
        c2.caption(f"WHAT IF: the photo with {o.box} greyed out.")
        panoptic_pair(o.original, o.changed, "The model's output: its panoptic map",
                      "WHAT IF: the panoptic map of the occluded photo")
        c3, c4 = st.columns(2)
        c3.image(framed(pictures.owner_change_picture(o, HALF)), width="stretch")
        c3.caption("Pixels that changed owner (the rest dimmed).")
        with c4:
            st.metric("Pixels that changed owner", f"{o.changed_share:.1%}")
            st.markdown(f"Kept before: {', '.join(map(str, o.kept_before)) or 'none'}  \n"
                        f"Kept after: {', '.join(map(str, o.kept_after)) or 'none'}  \n"
                        f"No longer kept: {', '.join(map(str, o.lost)) or 'none'}; "
                        f"newly kept: {', '.join(map(str, o.gained)) or 'none'}")


def url(ctx: state.Context) -> None:
    """Last section: the experiment into the address bar."""
    to_url()
