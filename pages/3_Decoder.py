"""Step 3 of 7: the decoder turns N object queries into N box embeddings (d x N = hs[-1])."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from detr_viz.explain import step3_decoder as dec
from detr_viz.explain.common import dims, shape_str
from ui import page, state

STEP = 3
WIDTH = page.DISPLAY_WIDTH          # display width of a picture (D.W is the network input's width)


def queries_to_embeddings(ctx: state.Context) -> None:
    """What the decoder does, checked live: the heads on hs[-1] give the traced predictions."""
    t = ctx.trace
    D = dims(t)
    chk = dec.embedding_check(t)

    st.header("From N object queries to N box embeddings")
    st.markdown(
        f"The decoder starts from **N = {D.N} object queries**: {D.N} learned vectors of d = {D.d} numbers "
        f"(`query_embed`, {shape_str((D.N, D.d))}). They are not the decoder's input: that starts as zeros, and the "
        f"queries are added to it as positions at every layer. Each of the **{D.dec_layers} decoder "
        f"layer{'s' if D.dec_layers != 1 else ''}** does self-attention among the {D.N} queries (so they can "
        f"share out the objects), cross-attention into the encoded image ({D.hw} cells, from step 2; keys = memory + "
        f"positions), and a small MLP; each of the three adds its result to its input (a residual connection) and "
        f"then applies a LayerNorm. After the decoder's shared LayerNorm, the last layer's output `hs[-1]` is "
        f"**{shape_str((D.N, D.d))}: the box embeddings**, the curriculum's d x N = {shape_str((D.d, D.N))}.  \n"
        f"Two small heads read each box embedding: `class_embed` (a linear layer) gives {D.C + 1} logits, "
        f"{D.C} class indices plus **no object** (the last); `bbox_embed` (an MLP of 3 layers, then a sigmoid) gives "
        f"a box (centre x, centre y, width, height) as fractions of the image. Checked live: the heads on "
        f"`hs[-1]` give the traced predictions to within {max(chk['logits_diff'], chk['boxes_diff']):.1e}. "
        f"Things (countable objects: {', '.join(dec.class_examples(t.categories, True))}) and stuff "
        f"(amorphous regions: {', '.join(dec.class_examples(t.categories, False))}) come out of the "
        f"same queries; only the class tells them apart. Stuff gets a box too: DETR was first trained as a "
        f"detector on every panoptic segment, stuff included, with box losses; the mask head came after.")
    note = dec.class_index_note(t.categories)
    if note:
        st.caption(note)


def kept_queries(ctx: state.Context) -> None:
    """The threshold, the kept queries' boxes, and every query in a table."""
    t = ctx.trace
    D = dims(t)
    st.header("What the queries found")
    threshold = page.threshold_slider(ctx)
    rows = dec.query_rows_at(t, threshold)
    kept = [r for r in rows if r["kept"]]
    n_thing = sum(r["kind"] == "thing" for r in kept)
    n_none = sum(r["kind"] == "no object" for r in rows)
    st.markdown(
        f"**{len(kept)} of the {D.N} queries are kept** at threshold {threshold:.2f} ({n_thing} things, "
        f"{len(kept) - n_thing} stuff): their most likely class is a real class and its probability is above "
        f"the threshold. {n_none} queries say \"no object\" most strongly. Move the threshold to change the "
        "kept set; steps 4 to 7 use the same setting.")
    c1, c2 = st.columns([1, 1], gap="large")
    with c1:
        st.image(dec.kept_boxes_picture_at(t, threshold, 2 * WIDTH), width="stretch",
                 caption="Final boxes of the kept queries: things solid, stuff dashed; tag = query: class "
                         "probability. Colours as in the panoptic map.")
    df = pd.DataFrame(rows).sort_values("score", ascending=False)
    score_col = st.column_config.ProgressColumn("score", min_value=0.0, max_value=1.0, format="%.3f")
    with c2:
        st.dataframe(df[["query", "class", "kind", "score", "kept"]], hide_index=True, width="stretch", height=460,
                     column_config={"score": score_col, "kept": st.column_config.CheckboxColumn("kept")})
        st.caption(f"All {D.N} queries, most confident first. score = the largest of the {D.C + 1} class "
                   "probabilities (no object included).")
    with st.expander("Every query in detail: p(no object), best real class, area in the panoptic map, box"):
        st.dataframe(df, hide_index=True, width="stretch",
                     column_config={"score": score_col, "p(no object)": st.column_config.NumberColumn(format="%.3f"),
                                    "kept": st.column_config.CheckboxColumn("kept")})
        st.caption("Boxes in pixels of the photo: (left, top, right, bottom). A kept query can still end with no "
                   "area: the merge gives every pixel to the strongest mask (step 7).")


def one_query(ctx: state.Context) -> None:
    """One query layer by layer (class probabilities, boxes), then where it looks."""
    t = ctx.trace
    D = dims(t)
    st.header("One query, layer by layer")
    q = page.query_picker(ctx, key="dec_query")
    st.markdown(f"The class and box heads read every decoder layer's output (after the shared norm), so we can "
                f"watch query {q} make up its mind over the {D.dec_layers} layers.")
    c1, c2 = st.columns([1, 1], gap="large")
    with c1:
        st.plotly_chart(dec.layer_probs_figure(t, q), config={"displayModeBar": False})
        st.dataframe(pd.DataFrame(dec.layer_table(t, q)),
                     hide_index=True, width="stretch",
                     column_config={"probability": st.column_config.NumberColumn(format="%.3f"),
                                    "p(no object)": st.column_config.NumberColumn(format="%.3f")})
    with c2:
        st.image(dec.layer_boxes_picture(t, q, 2 * WIDTH), width="stretch",
                 caption=f"Query {q}'s box after each layer, coloured by layer (tags L1 .. L{D.dec_layers}: viridis "
                         f"from dark = layer 1 to yellow = layer {D.dec_layers}); the thickest is the final box.")
    cross_attention(ctx, q)


def cross_attention(ctx: state.Context, q: int) -> None:
    """Where query q looks in the encoded image, per decoder layer: the mean of the heads, or each head."""
    t = ctx.trace
    D = dims(t)
    st.header(f"Where query {q} looks: cross-attention")
    c1, c2 = st.columns([1, 1])
    layer = c1.selectbox("Decoder layer", list(range(D.dec_layers)), index=D.dec_layers - 1,
                         format_func=lambda i: f"layer {i + 1} of {D.dec_layers}", key="dec_layer")
    mode = c2.segmented_control("Heads", ["average", "each head"], default="average", key="dec_heads") or "average"
    maps = dec.cross_attention(t, layer, q)                 # (M, h, w)
    if mode == "average":
        st.image(dec.average_cross_picture(t, layer, q, WIDTH), width=WIDTH)
        st.caption(f"Layer {layer + 1}: query {q}'s attention over the {shape_str((D.h, D.w))} cells, averaged over the "
                   f"{D.M} heads (each head's weights sum to 1). The white box is the query's box after this layer. "
                   f"The strongest cell gets {maps.mean(0).max():.1%}.")
    else:
        st.image(dec.heads_cross_picture(t, layer, q, 2 * WIDTH), width="stretch")
        st.caption(f"Layer {layer + 1}: the {D.M} heads of query {q}, each map on its own scale; white = the box "
                   "after this layer. Heads often look at different parts: edges, extremities, the centre.")
    st.info("These weights only decide what the decoder *reads* from the encoded image. The box attention maps "
            "of the next step are a different attention, computed once more from the final box embeddings.")


page.run(STEP, [queries_to_embeddings, kept_queries, one_query])
