"""Page scaffolding: config, context, sidebar, "Step k of 7" header, prev/next links, error guard,
and the small widgets several pages share (threshold slider, query picker, clickable image)."""
from __future__ import annotations

import logging
import traceback
from urllib.parse import urlencode

import altair  # noqa: F401  (loaded once with the server, not on a student's first visit of page 7: 0.2 s)
import numpy as np
import pandas as pd
import pandas.io.formats.style  # noqa: F401  (DataFrame.style: jinja2 templates, likewise)
import streamlit as st
import streamlit.emojis  # noqa: F401  (st.info's icon lookup, likewise)
from PIL import Image
from streamlit.errors import StreamlitAPIException
from streamlit.runtime.scriptrunner_utils.exceptions import ScriptControlException

import detr_viz

# DISPLAY_WIDTH: the width of a main picture, defined once (pages use page.DISPLAY_WIDTH)
from detr_viz.explain.common import DISPLAY_WIDTH, display_image, shape_str
from detr_viz.explain.step3_decoder import query_class
from detr_viz.stages import STEPS, stage, stages_of_step
from detr_viz.viz import fit_width

from . import lesson, quiz_view, state
from .models import source_lines
from .page_files import PAGES, QUESTIONS  # noqa: F401  (pages and tests use page.PAGES, page.QUESTIONS)

log = logging.getLogger("detr_viz.app")

SIDEBAR_WIDTH = 320          # the photo in the sidebar (sent at this size, not the photo's own)


def setup(step: int | None, title: str | None = None) -> state.Context:
    """Every page starts here: page config, the context (image, model, trace), sidebar, header."""
    configure(step, title)
    lesson.follow(step)          # a student takes the teacher's choices (and page); a teacher publishes
    ctx = context()
    sidebar(ctx)
    lesson.panel(ctx, step)
    notes(ctx)
    if step and step <= 7:
        header(step)
    elif title:
        st.title(title)
    return ctx


def configure(step: int | None, title: str | None = None) -> None:
    """st.set_page_config with the page's name (the first Streamlit call of a page)."""
    name = title or (STEPS[step - 1].title if step and step <= 7 else PAGES.get(step or 0, ("", "detr-viz"))[1])
    st.set_page_config(page_title=f"detr-viz · {name}", page_icon=":material/search:", layout="wide")
    menu()


# Icons of the sidebar menu (Material Symbols), one per entry of PAGES.
MENU_ICONS = {0: ":material/home:", 8: ":material/table_view:", 9: ":material/science:", QUESTIONS: ":material/quiz:"}


def menu() -> None:
    """The sidebar menu: Home, the seven numbered steps, All tensors, Questions. It replaces Streamlit's own
    page list (client.showSidebarNavigation = false), which would call the home page "app" and
    drop the step numbers. Drawn first, so it is there even when the rest of a page fails."""
    with st.sidebar:
        for key, (path, label) in PAGES.items():
            link(path, label, icon=MENU_ICONS.get(key, f":material/counter_{key}:"))
        st.divider()


def choice() -> None:
    """state.ensure_choice(), with a plain message instead of a traceback. If a choice was made
    before (an earlier run), it stays in use; with none at all the page stops."""
    try:
        state.ensure_choice()
    except ScriptControlException:
        raise
    except Exception as e:
        log.error("choice failed: %s", traceback.format_exc())
        ss = st.session_state
        have = state.K_IMAGE_BYTES in ss and state.K_MODEL in ss
        st.error(f"The image or model could not be set up ({type(e).__name__}: {e}). "
                 + ("The previous image and model stay in use." if have else
                    "Reload the page; if it keeps failing, upload a photo."))
        if not have:
            st.stop()


def context() -> state.Context:
    """state.ensure_context(), with a plain message (and st.stop) instead of a traceback."""
    try:
        return state.ensure_context()
    except detr_viz.ImageError as e:
        st.error(f"The current image cannot be used: {e} Pick another image on the Home page.")
        link("app.py", "Go to the Home page", icon=":material/home:")
        st.stop()
    except Exception as e:            # never a raw traceback in the app
        log.error("context failed: %s", traceback.format_exc())
        st.error(f"The model could not be run ({type(e).__name__}: {e}). "
                 "Reload the page; if it keeps failing, choose another model on the Home page.")
        st.stop()


def notes(ctx: state.Context) -> None:
    for note in ctx.notes:
        st.info(note)


def header(step: int) -> None:
    s = STEPS[step - 1]
    st.caption(f"Step {step} of 7")
    st.title(s.title)
    st.markdown(s.summary)
    if s.question:
        st.info(f"**The curriculum asks:** *{s.question}*")


def sidebar(ctx: state.Context) -> None:
    with st.sidebar:
        guard(_sidebar_body, ctx)


def _sidebar_body(ctx: state.Context) -> None:
    """The photo (its credit), model, device and trace time, under the menu."""
    st.image(display_image(ctx.trace, SIDEBAR_WIDTH), caption=ctx.image_name, width="stretch")
    if ctx.image_credit:
        st.caption(ctx.image_credit)
    st.markdown(f"**Model:** {state.model_label(ctx.model_key)}  \n**Device:** {ctx.trace.device_name}  \n"
                f"**Traced in:** {ctx.trace.total_time:.2f} s")
    st.caption("  \n".join(source_lines(ctx.model)))
    link("app.py", "Change image or model", icon=":material/home:")


def nav(step: int) -> None:
    """Previous / next links at the bottom of a page."""
    st.divider()
    left, _, right = st.columns([1, 2, 1])
    if step - 1 in PAGES:
        path, label = PAGES[step - 1]
        link(path, f"← {label}", container=left)
    if step + 1 in PAGES:
        path, label = PAGES[step + 1]
        link(path, f"{label} →", container=right)


def url_of(path: str) -> str:
    """The URL path Streamlit gives a page file ("pages/3_Decoder.py" -> "/Decoder", "app.py" -> "/")."""
    if path == "app.py":
        return "/"
    stem = path.rsplit("/", 1)[-1][:-3]
    return "/" + (stem.split("_", 1)[1] if "_" in stem and stem.split("_", 1)[0].isdigit() else stem)


def href(step: int) -> str:
    """URL of a page with this session's image, model and threshold in its query string: a plain
    HTML link (e.g. in the Home diagram) reloads the page in a new session, which reads them back."""
    params = state.url_params()
    return url_of(PAGES[step][0]) + ("?" + urlencode(params) if params else "")


def link(path: str, label: str, icon: str | None = None, container=None) -> None:
    """st.page_link, falling back to a plain link where the page registry is not available
    (e.g. a page run on its own in AppTest)."""
    target = container or st
    try:
        target.page_link(path, label=label, icon=icon)
    except StreamlitAPIException:
        target.markdown(f"[{label}]({url_of(path)})")


def run(step: int, sections: list, title: str | None = None, shapes: bool = True) -> None:
    """The skeleton of every page after Home: setup (config, context, sidebar, header), its sections
    in order (named functions of the context, guarded together: an error ends the body with a plain
    message; a section that returns False ends the body there), this step's shapes table (`shapes`),
    the step's "Check yourself" questions (steps 1-7), and the prev/next links."""
    ctx = setup(step, title)

    def body(ctx: state.Context) -> None:
        for section in sections:
            if section(ctx) is False:
                return
    guard(body, ctx)
    if shapes and step <= 7:
        st.header("Shapes of this step")
        shapes_table(ctx.trace, stages_of_step(step, ctx.trace.config))
    if 1 <= step <= 7:
        guard(lambda c: quiz_view.check_yourself(c, step), ctx)
    nav(step)


def guard(render, ctx: state.Context) -> None:
    """Run a page body; on an unexpected error show a plain message instead of a traceback."""
    try:
        render(ctx)
    except ScriptControlException:     # st.stop / st.rerun must pass through
        raise
    except Exception as e:
        log.error("page failed: %s", traceback.format_exc())
        st.error(f"Something went wrong while drawing this part of the page ({type(e).__name__}: {e}). "
                 "Try another query or image; the rest of the app keeps working.")


def shapes_table(trace, names: list[str]) -> None:
    """Stage, live shape and description for the stages a page shows."""
    rows = [{"stage": n, "shape": shape_str(trace.shape(n)), "what it is": stage(n, trace.config).description}
            for n in names if n in trace]
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch",
                 height=min(35 * (len(rows) + 1) + 3, 780))   # every row visible (up to ~21)


def threshold_slider(ctx: state.Context, key: str = "threshold_widget") -> float:
    """The merge's score threshold; its value survives page switches (session key 'threshold')."""
    current = float(st.session_state.get(state.K_THRESHOLD, ctx.trace.threshold))

    def _copy():
        st.session_state[state.K_THRESHOLD] = float(st.session_state[key])
    st.slider("Score threshold of the merge (keep a query if its class probability is above this)",
              0.0, 0.99, value=current, step=0.01, key=key, on_change=_copy)
    return float(st.session_state.get(state.K_THRESHOLD, current))


def query_label(ctx: state.Context, q: int) -> str:
    label, score = query_class(ctx.trace, q)
    return f"query {q}: {ctx.trace.categories.label(label)} ({score:.2f})"


def query_picker(ctx: state.Context, key: str, label: str = "Query", only_kept: bool = False) -> int:
    """Pick a query: kept ones first (by score), then the others. Remembers the choice across pages."""
    pan = ctx.panoptic
    kept = [int(q) for q in pan.kept]
    others = [q for q in np.argsort(-pan.scores).tolist() if q not in kept]
    options = kept + ([] if only_kept and kept else others)
    default = st.session_state.get(state.K_QUERY, options[0] if options else 0)
    if default not in options:
        default = options[0]

    def _copy():
        st.session_state[state.K_QUERY] = int(st.session_state[key])
    q = st.selectbox(label, options, index=options.index(default), key=key, on_change=_copy,
                     format_func=lambda q: ("✓ " if q in kept else "") + query_label(ctx, q))
    st.session_state[state.K_QUERY] = int(q)
    return int(q)


def clickable_image(image: Image.Image, key: str, width: int = DISPLAY_WIDTH,
                    new_only: bool = False) -> tuple[int, int] | None:
    """Show an image; return the last clicked point in the image's own pixels (None if no click).

    new_only: return the point only on the run right after the click (None on later reruns), for
    pages where other widgets may change the selection after a click.
    Uses streamlit-image-coordinates; if the component is missing, falls back to two sliders."""
    shown = fit_width(image, min(width, image.width * 4))
    try:
        from streamlit_image_coordinates import streamlit_image_coordinates
    except ImportError:                # pragma: no cover - fallback when the component is absent
        st.image(shown)
        x = st.slider("x (pixels)", 0, image.width - 1, image.width // 2, key=f"{key}_x")
        y = st.slider("y (pixels)", 0, image.height - 1, image.height // 2, key=f"{key}_y")
        return x, y
    value = streamlit_image_coordinates(shown, key=key, width="stretch", image_format="JPEG", jpeg_quality=90,
                                        cursor="crosshair")
    if not value:
        return None
    if new_only:
        seen_key = f"_{key}_seen"
        stamp = (value.get("x"), value.get("y"), value.get("unix_time"))
        if st.session_state.get(seen_key) == stamp:
            return None
        st.session_state[seen_key] = stamp
    sx = image.width / value.get("width", shown.width)
    sy = image.height / value.get("height", shown.height)
    return (min(image.width - 1, max(0, int(value["x"] * sx))), min(image.height - 1, max(0, int(value["y"] * sy))))
