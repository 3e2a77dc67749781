"""Home page of detr-viz: what the app is, the pipeline diagram with this photo's live shapes, the
photo and model pickers, the device and the time each block took.

Run with `streamlit run app.py`; the steps are the pages in pages/ (classic multipage).
"""
from __future__ import annotations

import traceback

import streamlit as st

import detr_viz
from detr_viz import MODELS, WeightsUnavailable, samples
from detr_viz.explain import home
from detr_viz.explain.common import dims
from ui import lesson, page, state
from ui.own_model import own_model_section
from ui.server_panel import server_panel

IMAGE_TYPES = ["jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff", "gif"]
K_UPLOAD_SEEN, K_UPLOAD_ERROR, K_SAMPLE_ERROR = "upload_seen", "upload_error", "sample_error"
W_UPLOAD, W_SAMPLE, W_MODEL = "upload_widget", "sample_widget", "model_widget"


def image_picker() -> None:
    """Upload or sample. An upload is validated and copied into session state once (widget values
    are dropped on page switch); a bad file leaves the previous image in place."""
    ss = st.session_state
    st.subheader("The photo")
    up = st.file_uploader("Upload a photo (JPEG, PNG, WebP, BMP, TIFF, or the first frame of a GIF)",
                          type=IMAGE_TYPES, key=W_UPLOAD)
    if up is not None and up.file_id != ss.get(K_UPLOAD_SEEN):
        ss[K_UPLOAD_SEEN] = up.file_id                    # process each upload once, not on every rerun
        ss.pop(K_UPLOAD_ERROR, None)
        try:
            state.set_image(up.name, up.getvalue(), credit="Uploaded in this session.")
        except detr_viz.ImageError as e:
            ss[K_UPLOAD_ERROR] = (up.file_id, up.name, str(e))
    err = ss.get(K_UPLOAD_ERROR)
    if err and up is not None and err[0] == up.file_id:
        st.error(f"**{err[1]}** cannot be used. {err[2]}  \nThe previous image, **{ss[state.K_IMAGE_NAME]}**, "
                 "is still in use.")

    current = ss[state.K_IMAGE_SOURCE]
    options = {s.key: f"{'Photo' if s.kind == 'photo' else 'Toy world'} · {s.title} ({s.license})"
               for s in samples.all_samples()}
    if current not in options:                          # an upload
        options = {current: f"Your upload: {ss[state.K_IMAGE_NAME]}", **options}
    if ss.get(W_SAMPLE) != current:                     # show the image in use (set before the widget exists)
        ss[W_SAMPLE] = current

    def on_sample():
        """A failing sample leaves the previous image in place (the widget snaps back to it on the
        rerun) and says why, instead of a traceback."""
        key = ss[W_SAMPLE]
        if key.startswith("upload:"):
            return
        try:
            state.set_sample(key)
        except Exception as e:
            page.log.error("sample %s failed: %s", key, traceback.format_exc())
            ss[K_SAMPLE_ERROR] = f"The sample **{options.get(key, key)}** cannot be used ({type(e).__name__}: {e})."
    st.selectbox("... or use a sample image", list(options), format_func=options.get, key=W_SAMPLE,
                 on_change=on_sample)
    err = ss.pop(K_SAMPLE_ERROR, None)
    if err:
        st.error(f"{err}  \nThe previous image, **{ss[state.K_IMAGE_NAME]}**, is still in use.")
    if not samples.toy_scenes():
        st.caption("Toy-world scenes appear here once the offline toyworld model ships with the app.")


def model_label(key: str) -> str:
    if state.weights_on_disk(key):
        status = "ready"
    elif key in MODELS and MODELS[key].url:
        size = MODELS[key].size_bytes
        status = f"download about {size / 1e6:.0f} MB" if size else "download"
    else:
        status = "not in this copy of the app yet"
    return f"{state.model_label(key)} · {status}"


def model_picker() -> None:
    """Official R50 / R50-DC5 / R101 (downloaded on first use, with a bar), the offline toyworld
    model, or your own (ui.own_model). Runs before the trace, so a new choice is traced at once."""
    ss = st.session_state
    st.subheader("The model")
    current = ss[state.K_MODEL]
    keys = state.official_keys() + ["toyworld"]
    if current not in keys:
        keys.append(current)                             # your own model, or the test model
    if ss.get("_model_widget_for") != current:          # the model changed elsewhere (e.g. a fallback)
        ss[W_MODEL] = current
        ss["_model_widget_for"] = current
    choice = st.selectbox("Model", keys, format_func=model_label, key=W_MODEL)
    if choice != current:
        official_choice(choice)
    own_model_section(state.use_model)
    st.caption(f"In use: **{state.model_label(ss[state.K_MODEL])}**")


def official_choice(choice: str) -> None:
    """Use a registry model, downloading its weights first (with a bar) if they are not here."""
    ss = st.session_state
    if state.weights_on_disk(choice):
        state.use_model(choice)
    elif MODELS[choice].url is None:
        st.warning(f"The **{choice}** model file is not in this copy of the app yet, so it cannot be used.")
    else:
        e = MODELS[choice]
        st.info(f"**{choice}** needs its official weights, `{e.file_name}`, downloaded once from "
                f"dl.fbaipublicfiles.com into `{e.cache_path.parent}`.")
        if st.button(f"Download and use {choice}", type="primary"):
            try:
                state.download_weights(choice)
                state.use_model(choice)
            except WeightsUnavailable as err:
                fallback = state.offline_model_key()
                st.warning(f"The official weights of **{choice}** cannot be had here, so the app uses the "
                           f"offline model **{fallback}** instead. What went wrong:")
                st.code(str(err), language=None)
                state.use_model(fallback)
                ss[state.K_NOTES] = [f"The official weights of **{choice}** could not be had "
                                     f"({getattr(err, 'reason', err)}); the app uses the offline model "
                                     f"**{fallback}**."]


def render(ctx: state.Context) -> None:
    trace = ctx.trace
    D = dims(trace)
    st.header("The pipeline, with this photo's shapes")
    st.markdown(home.pipeline_svg(trace, {k: page.href(k) for k in page.PAGES if k}), unsafe_allow_html=True)
    st.caption(f"Shapes leave out the batch dimension (1). d = {D.d} channels, N = {D.N} object queries, "
               f"M = {D.M} heads; the photo is {D.W0} x {D.H0} pixels and enters the network resized to "
               f"{D.W} x {D.H}, so the transformer's grid is {D.h} x {D.w} cells (H/{D.stride} x W/{D.stride}). "
               "Click a box to open its step.")

    left, right = st.columns(2, gap="large")
    with left:
        st.subheader("Where it ends: the panoptic map")
        page.threshold_slider(ctx)
        pan = ctx.panoptic
        st.image(home.panoptic_picture(trace, pan.threshold, page.DISPLAY_WIDTH), width="stretch")
        if ctx.image_credit:
            st.caption(f"Photo: {ctx.image_credit}")
        things = sum(1 for s in pan.segments if s["isthing"])
        st.caption(f"{len(pan.segments)} segments ({things} things, {len(pan.segments) - things} stuff) from "
                   f"{len(pan.kept)} of the {D.N} queries with a class probability above {pan.threshold:.2f}: "
                   + (", ".join(sorted({s["name"] for s in pan.segments})) or "none") + ".")
    with right:
        st.subheader("Where the time went")
        st.markdown(f"Device: **{trace.device_name}**. The whole forward pass and merge took "
                    f"**{trace.total_time:.2f} s**; it ran once for this photo and model, and every page "
                    "reads the same trace.")
        st.plotly_chart(home.timings_figure(trace), config={"displayModeBar": False})
        st.caption("The mask head ran only for the queries the merge keeps (each query's mask is computed "
                   "on its own, so this gives the same masks as running all of them).")
    st.divider()
    page.link("pages/1_Backbone.py", "Start the walk: Step 1 · CNN backbone →", icon=":material/play_arrow:")


page.configure(0)
st.title("DETR panoptic segmentation, step by step")
st.markdown(
    "This app takes one photo through **DETR**'s panoptic segmentation model (Carion et al. 2020, "
    "facebookresearch/detr, `detr_resnet50_panoptic`) and shows what happens to it at every step. "
    "Every picture and number comes from a real forward pass on that photo: the shapes on the "
    "diagram below are this photo's tensors, and each box opens the page that explains its step. "
    "Upload a photo or pick a sample, choose a model, then walk through the seven steps.")
page.choice()
lesson.home_section()
col_image, col_model = st.columns(2, gap="large")
with col_image:
    page.guard(lambda _: image_picker(), None)
with col_model:
    page.guard(lambda _: model_picker(), None)
ctx = page.context()
page.sidebar(ctx)
page.notes(ctx)
page.guard(render, ctx)
server_panel()
