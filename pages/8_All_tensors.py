"""All tensors: every captured stage of the trace (searchable), a preview of any stage, and downloads.

A thin view over explain.tensors.summary(), Trace.to_npz() and detr_viz.explain.tensors.
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from detr_viz.explain import tensors as tx
from detr_viz.explain.common import shape_str
from detr_viz.stages import STEPS
from ui import page, state

STEP = 8


def file_stem(ctx: state.Context) -> str:
    return tx.safe_name(ctx.image_name.rsplit(".", 1)[0])


def search_and_look(ctx: state.Context) -> None:
    """The table of every stage, searchable, and one stage's preview."""
    shown, rows = stage_table(ctx)
    one_stage(ctx, shown, rows)


def stage_table(ctx: state.Context) -> tuple[list[dict], list[dict]]:
    """Every stage in pipeline order, filtered by the search and the steps; returns (shown, all) rows."""
    t = ctx.trace
    traced = tuple(t.mask_queries)                          # grows when a page runs the mask head for a query
    rows = tx.summary_at(t, traced)
    K = len(traced)
    st.markdown(
        f"Every stage recorded for **{ctx.image_name}** with **{ctx.model_key}**: {len(rows)} tensors, in pipeline "
        f"order. Per-query stages (step 5 and 6) hold the K = {K} queries run through the mask head, in this order: "
        f"{', '.join(map(str, traced))}. Stages marked **rebuilt** (ReLUs, upsamplings, FPN sums of the mask "
        f"head, the stem's BN/ReLU) are not kept in memory: they are rebuilt from a stored neighbour by the "
        f"model's own modules when needed (here, for their statistics).")

    c1, c2 = st.columns([2, 3])
    with c1:
        text = st.text_input("Search (stage name, description or shape)", key="tensors_search",
                             placeholder="e.g. attn, res4, mask_head, 25 x 34")
    with c2:
        steps = st.multiselect("Steps", [s.number for s in STEPS], key="tensors_steps",
                               format_func=lambda k: f"{k} · {STEPS[k - 1].title}")
    shown = tx.filter_rows(rows, text, steps)
    df = pd.DataFrame(shown, columns=tx.SUMMARY_COLUMNS)
    st.dataframe(df, hide_index=True, width="stretch", height=min(600, 38 + 35 * max(1, len(df))),
                 column_config={k: st.column_config.NumberColumn(format="%.4g") for k in ("min", "max", "mean")})
    st.caption(f"{len(shown)} of {len(rows)} stages shown.")
    return shown, rows


def one_stage(ctx: state.Context, shown: list[dict], rows: list[dict]) -> None:
    """A preview of one stage, and its downloads."""
    t, stem = ctx.trace, file_stem(ctx)
    st.subheader("Look at one stage")
    names = [r["stage"] for r in shown] or [r["stage"] for r in rows]
    name = st.selectbox("Stage", names, key="tensors_stage")
    q = int(st.session_state.get(state.K_QUERY, t.mask_queries[0]))
    img, caption = tx.stage_preview(t, name, q)
    st.image(img, width=min(img.width, 900))
    st.caption(caption + ("" if name == "input" else " (each tile on its own scale: viridis for non-negative "
                                                    "values, purple–orange around 0 for signed ones)"))
    c1, c2 = st.columns(2)
    c1.download_button(f"Preview of {name} (PNG)", data=lambda: tx.png_bytes(img),
                       file_name=f"{stem}_{name}.png", mime="image/png", on_click="ignore", key="dl_preview")
    c2.download_button(f"{name} as a NumPy array (.npy)", data=lambda: tx.stage_npy_bytes(t, name),
                       file_name=f"{stem}_{name}.npy", mime="application/octet-stream", on_click="ignore",
                       key="dl_stage")


def downloads(ctx: state.Context) -> None:
    """The panoptic map, its ids and segments, the whole trace, and any figure of the app."""
    t, pan, stem = ctx.trace, ctx.panoptic, file_stem(ctx)
    q = int(st.session_state.get(state.K_QUERY, t.mask_queries[0]))
    st.subheader("Downloads")
    mb = tx.megabytes_at(t, tuple(t.mask_queries))
    c1, c2, c3 = st.columns(3)
    c1.download_button("Panoptic map (colour PNG)", data=lambda: pan.png_bytes(), file_name=f"{stem}_panoptic.png",
                       mime="image/png", on_click="ignore", key="dl_panoptic_png")
    c2.download_button("Panoptic ids (official PNG encoding)", data=lambda: pan.official_png_bytes(),
                       file_name=f"{stem}_panoptic_ids.png", mime="image/png", on_click="ignore", key="dl_official_png")
    c3.download_button("Segments (JSON)", data=pan.segments_json(), file_name=f"{stem}_segments.json",
                       mime="application/json", on_click="ignore", key="dl_segments")
    st.download_button(f"The whole trace (.npz, about {mb:,.0f} MB before compression; built when you click)",
                       data=lambda: tx.npz_bytes(t), file_name=f"{stem}_trace.npz",
                       mime="application/octet-stream", on_click="ignore", key="dl_trace")
    st.caption(f"The panoptic files are at the session threshold {pan.threshold:.2f}, {shape_str(pan.target_size)} "
               f"px (height x width). The ids PNG encodes segment id i as R + 256·G + 65536·B, "
               "as the official post-processor does (it looks black). The .npz holds every stage under its name, plus "
               "`mask_queries`, `panoptic.id_map` and `panoptic.segments_json`; it takes a while to build.")

    c1, c2 = st.columns([3, 2])
    with c1:
        fig = st.selectbox("A figure of the app, as PNG", tx.figure_names(t), key="tensors_figure")
    with c2:
        st.write("")
        st.download_button("Download the figure (PNG)", data=lambda: tx.png_bytes(tx.figure(t, pan, fig, q)),
                           file_name=f"{stem}_{tx.safe_name(fig.split('(')[0])}.png", mime="image/png",
                           on_click="ignore", key="dl_figure")
    st.caption(f"Figures of a query use the query chosen on pages 5–6 (now query {q}).")


def model_modules(ctx: state.Context) -> None:
    """Every named submodule of the model with its output shape (from the trace's forward hooks)."""
    t = ctx.trace
    with st.expander(f"Every named submodule of the model ({len(t.modules)}) with its output shape"):
        st.dataframe(pd.DataFrame(t.modules, columns=["module", "type", "output shape"]),
                     hide_index=True, width="stretch", height=500)
        st.caption("From forward hooks during the trace. \"not called\": the module never ran as a module "
                   "(e.g. a container, or weights used functionally). Mask-head shapes have the batch of the first "
                   "pass: the queries kept at the trace's own threshold.")


page.run(STEP, [search_and_look, downloads, model_modules], title="All tensors", shapes=False)
