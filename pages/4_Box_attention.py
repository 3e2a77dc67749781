"""Step 4 of 7: the box attention maps. What turns d x N box embeddings and the d x H/32 x W/32
encoded image into N x M x H/32 x W/32 maps."""
from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from detr_viz.explain import step4_box_attention as att
from detr_viz.explain.common import dims, shape_str
from detr_viz.explain.step3_decoder import real_class_ranking
from ui import page, state, whatif_view

STEP = 4
CLICK_KEY = "att_grid_click"
W_QUERY, W_HEAD = "att_query", "att_head"
SUM = "all heads (sum)"
MAX_ROWS = 12                 # rows of the grid shown at first (a projector-sized picture)
WIDTH = page.DISPLAY_WIDTH    # display width of a picture (D.W is the network input's width)


def shown_queries(ctx) -> tuple[list[int], str]:
    """The kept queries (by score), or the 5 most confident if the threshold keeps none."""
    ranking, kept = real_class_ranking(ctx.trace), set(int(q) for q in ctx.panoptic.kept)
    if kept:
        return [q for q in ranking if q in kept], f"the {len(kept)} kept queries"
    return ranking[:5], "the 5 queries most sure of a real class (none is kept)"


def answer(ctx: state.Context) -> None:
    """The curriculum's question answered: one attention step whose weights are the output, checked live."""
    t = ctx.trace
    D = dims(t)
    rec = att.recompute(t)
    st.header("The answer: one attention step, whose weights are the output")
    st.success(
        f"The {D.N} box embeddings (hs[-1], {shape_str((D.d, D.N))}) and the encoded image (memory, "
        f"{shape_str((D.d, D.h, D.w))}) "
        f"go through DETR's `MHAttentionMap`: multi-head attention **without values and without an output "
        f"projection**. Each box embedding becomes a query, each of the {D.hw} cells a key, and the "
        f"attention **weights themselves** are the result: for every query, {D.M} heads x {D.h} x {D.w} cells = "
        f"**{shape_str((D.N, D.M, D.h, D.w))}** maps. The softmax is taken over heads and cells **together**, so "
        f"the {D.M} maps of one query share one budget of 1 (not 1 per head). Unlike the decoder's cross-attention "
        f"(step 3: keys = memory + positions), the keys here carry **no position encoding**: they are computed "
        f"from `memory` alone.")
    for caption, latex in att.formula_latex(t):
        st.markdown(caption)
        st.latex(latex)
    st.markdown(
        f"In the code: `q_linear` is a {shape_str((D.d, D.d))} linear layer on the box embeddings; `k_linear` is "
        f"also a {shape_str((D.d, D.d))} linear layer, but its weight is used as a 1x1 convolution over the memory map "
        f"(`F.conv2d`), so the module `k_linear` itself never runs. The scale is 1/sqrt({D.dh}) = "
        f"{rec['scale']:.4f}. Cells of the padding (none for one image) would get -inf before the softmax.  \n"
        f"**Checked live**: redoing these steps from the traced `hs[-1]` and `memory` with the model's weights "
        f"gives the traced `bbox_attention.q` to within {rec['q_diff']:.1e} and the traced maps to within "
        f"{rec['maps_diff']:.1e}.")


def maps(ctx: state.Context) -> None:
    """The grid of maps (a click picks a query and head), one map large, and the live check of the sums."""
    queries = grid_of_maps(ctx)
    one_map(ctx, queries)
    verified_sums(ctx, queries)


def grid_of_maps(ctx: state.Context) -> list[int]:
    """The shown queries' maps, one row per query and one column per head; returns the queries."""
    t = ctx.trace
    D = dims(t)
    st.header(f"The {shape_str((D.N, D.M, D.h, D.w))} maps")
    queries, which = shown_queries(ctx)
    if len(queries) > MAX_ROWS:
        n = st.slider("Queries shown (most confident first)", 1, len(queries), MAX_ROWS, key="att_rows")
        which += f", the first {n} shown"
        queries = queries[:n]
    scale = st.radio("Colour scale", ["query", "map"], horizontal=True, key="att_scale",
                     format_func={"query": "one per query (which heads carry its attention)",
                                  "map": "one per map (the shape of every map)"}.get)
    st.markdown(f"Rows: {which}; columns: the {D.M} heads; viridis from 0 (dark) to the scale's largest value "
                "(yellow). **Click a map to see it large below.**")
    grid_pic, layout = att.maps_grid(t, queries, att.row_labels(t, queries), 2 * WIDTH, scale)
    click = page.clickable_image(grid_pic, CLICK_KEY, width=2 * WIDTH, new_only=True)
    if click is not None:
        hit = layout.cell_at(*click)
        if hit is not None:                                 # a click selects query and head below
            st.session_state[W_QUERY] = queries[hit[0]]
            st.session_state[W_HEAD] = hit[1]
    return queries


def one_map(ctx: state.Context, queries: list[int]) -> None:
    """One query's map (one head or their sum) large, its numbers, and how its budget splits over heads."""
    t = ctx.trace
    D = dims(t)
    c1, c2 = st.columns([1, 1])
    if st.session_state.get(W_QUERY) not in queries:
        st.session_state[W_QUERY] = queries[0]
    pan = ctx.panoptic
    q = c1.selectbox("Query", queries, key=W_QUERY,
                     format_func=lambda q: f"query {q}: {t.categories.label(int(pan.labels[q]))} "
                                           f"({pan.scores[q]:.2f})")
    head = c2.selectbox("Head", [None] + list(range(D.M)), key=W_HEAD,
                        format_func=lambda m: SUM if m is None else f"head {m + 1}")
    s = att.map_summary(t, q, head)
    left, right = st.columns([1, 1], gap="large")
    with left:
        st.image(att.map_picture(t, q, head, WIDTH), width="stretch")
    with right:
        what = f"the sum of query {q}'s {D.M} maps" if head is None else f"query {q}, head {head + 1}"
        st.markdown(
            f"**{what.capitalize()}.** This map holds **{s['share']:.1%}** of the query's attention. Its strongest "
            f"cell is row {s['peak_cell'][0]}, column {s['peak_cell'][1]} with {s['peak']:.4f}; spread evenly, "
            f"every one of the {shape_str((D.M, D.hw))} numbers would be {s['uniform']:.2e}.")
        shares = att.head_shares(t, [q])[0]                 # (M,)
        st.bar_chart(pd.DataFrame({"share of the attention": shares},
                                  index=[f"head {m + 1}" for m in range(D.M)]), height=260)
        st.caption(f"How query {q}'s budget of 1 is split over the heads (sum {shares.sum():.6f}). With a "
                   f"softmax per head instead, the {D.M} maps would sum to "
                   f"{att.per_head_softmax_sum(att.recompute(t), q):.0f}.")


def verified_sums(ctx: state.Context, queries: list[int]) -> None:
    """The live check: each shown query's M maps sum to 1, single heads do not."""
    t = ctx.trace
    D = dims(t)
    st.header("Verified: the maps of a query sum to 1")
    rows = att.sum_rows(t, queries, att.query_names(t, queries))
    total = np.array([r["sum of its M maps"] for r in rows])
    st.markdown(f"Summing each shown query's {shape_str((D.M, D.h, D.w))} = {D.M * D.hw} traced numbers: all sums lie "
                f"between **{total.min():.6f}** and **{total.max():.6f}** (largest distance from 1: "
                f"{np.abs(total - 1).max():.1e}, float32 rounding), while single heads "
                f"hold anything from {min(min(v for k, v in r.items() if k.startswith('head')) for r in rows):.3f} "
                f"to {max(max(v for k, v in r.items() if k.startswith('head')) for r in rows):.3f}.")
    fmt = {c: st.column_config.NumberColumn(format="%.3f") for c in rows[0] if c.startswith("head")}
    fmt["sum of its M maps"] = st.column_config.NumberColumn(format="%.6f")
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", column_config=fmt)
    st.caption("These maps go on to step 5: each query's M maps are stacked onto input_proj(Res5) as M extra "
               "channels.")


page.run(STEP, [answer, maps, whatif_view.lab_heads])
