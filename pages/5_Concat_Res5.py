"""Step 5: the concatenation with "Res5" — where is this coming from?

A thin view over detr_viz.explain.step5_concat_res5: every number below is read from the live trace.
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from detr_viz.explain import step5_concat_res5 as concat
from detr_viz.explain.common import dims, shape_str
from ui import page, state, whatif_view

STEP = 5
CHANNEL_CHOICES = {"most varied (largest spatial variance)": "variance", "first ones": "first",
                   "evenly spaced": "spaced"}


def answer(ctx: state.Context) -> None:
    """The curriculum's question answered: input_proj(Res5), taken from before the encoder; the code."""
    t = ctx.trace
    D = dims(t)
    d, M, N, h, w = D.d, D.M, D.N, D.h, D.w
    K = len(t.mask_queries)
    st.subheader("The answer: input_proj(Res5), taken from *before* the encoder")
    st.markdown(
        f"The backbone's last stage gives **Res5**: `backbone.res5`, {shape_str((D.C5, h, w))} for this photo. "
        f"The concat does not use it raw. A 1x1 conv, `input_proj`, first turns it into d = {d} channels: "
        f"`input_proj(Res5)`, {shape_str((d, h, w))}. **That very tensor is what entered the encoder** (page 2), "
        f"as {h * w} tokens of {d} numbers. The mask head takes it again from there. It does not take the "
        f"encoder's output (`memory`, page 2), which only the decoder and the box attention (pages 3–4) use.\n\n"
        f"The curriculum's answer says the backbone's intermediate outputs Res5, Res4, Res3 and Res2 are "
        f"\"set aside\" for the mask head. For Res4, Res3 and Res2 that is exactly right: page 6 adds them "
        f"through 1x1 adapters. For this concat, the code uses the *projected* Res5.")
    scale = float(t.config.bbox_attention_scale)
    lines = [("x = torch.cat([src_proj.repeat_interleave(K, dim=0),",
              f"# (K, {d}, {h}, {w}): input_proj(Res5), once per query"),
             (f"               bbox_mask.flatten(0, 1) * {scale:g}],",
              f"# (K, {M}, {h}, {w}): each query's {M} attention maps"),
             ("              dim=1)", f"# (K, {d + M}, {h}, {w})")]
    st.code("# detr_viz's MaskHead.forward, our own equivalent of the official MaskHeadSmallConv (same\n"
            "# tensors, same result; not the official lines). K = queries run through the mask head\n"
            + "\n".join(code.ljust(56) + comment for code, comment in lines),
            language="python")
    mb = N * (d + M) * h * w * 4 / 1e6
    st.markdown(
        f"The official forward does this for **all N = {N} queries**: N x (d+M) x h x w = "
        f"{shape_str((N, d + M, h, w))} ({mb:.1f} MB of float32), and runs the whole mask head on that batch. "
        f"This app runs it only for the **K = {K}** queries it needs (queries "
        f"{', '.join(map(str, t.mask_queries))}; others are added when you pick them). Each query is an "
        f"independent sample of the mask head (GroupNorm normalises each sample on its own), so the masks "
        f"are the same.")
    if scale != 1.0:
        st.info(
            f"This model multiplies the attention maps by **bbox_attention_scale = {scale:g}** "
            f"(`model.config`) before the concat. Small models trained from scratch need it: the maps are "
            f"probabilities that sum to 1 over {shape_str((M, h, w))} cells, far smaller than the features. "
            f"The official checkpoints use 1.")
    page.shapes_table(t, ["backbone.res5", "input_proj", "memory", "bbox_attention", "mask_head.concat"])


def one_query_stack(ctx: state.Context) -> None:
    """One query's stack: the deck of sheets, the live checks, both parts drawn, their scales."""
    t = ctx.trace
    D = dims(t)
    d, M, h, w = D.d, D.M, D.h, D.w
    st.subheader("One query's stack")
    q = page.query_picker(ctx, key="concat_query")
    stack = concat.concat_stack(t, q)
    how = CHANNEL_CHOICES[st.radio("Feature channels to draw", list(CHANNEL_CHOICES), horizontal=True,
                                   key="concat_channels")]
    channels = concat.feature_channels(stack, 8, how)
    st.image(concat.deck_picture(t, q, how), width="stretch")
    st.caption(
        f"Query {q}'s slice of `mask_head.concat`: {d + M} sheets of {shape_str((h, w))}. Blue edges: feature "
        f"channels (purple = negative, orange = positive, each sheet on its own symmetric scale). Orange edges: "
        f"attention channels (viridis, 0 to the largest value).")
    live_checks(stack)
    st.markdown(f"**Channels 0–{d - 1}: input_proj(Res5)**, the same for every query. 8 of {d} drawn: "
                f"channels {', '.join(map(str, channels))} (purple negative, orange positive, each on its own scale).")
    st.image(concat.feature_picture(t, q, how), width="content")
    st.markdown(f"**Channels {d}–{d + M - 1}: the {M} attention maps of query {q}**, on one shared scale "
                f"(viridis, 0 to {float(stack.attention.max()):.2g}). The % is the head's share of the query's "
                "attention.")
    st.image(concat.attention_picture(t, q), width="content")

    st.markdown("**The two parts live on very different scales:**")
    st.dataframe(pd.DataFrame(stack.ranges()), hide_index=True, width="stretch",
                 column_config={k: st.column_config.NumberColumn(format="%.3g")
                                for k in ("min", "max", "mean |value|")})
    st.markdown(
        f"The {M} maps of a query are one softmax over heads *and* positions: together they sum to 1, so the "
        f"average attention value is 1 / ({shape_str((M, h, w))}) = {1 / (M * h * w):.2g}. The first 3x3 conv of "
        f"the mask head (`lay1`, {d + M} → {d + M} channels) learns how much weight to give them next to the "
        f"features.")
    with st.expander(f"Where query {q} looks: the sum of its {M} maps over the photo"):
        st.image(concat.query_attention_overlay(t, q), width=640)


def live_checks(stack: concat.ConcatStack) -> None:
    """The claims about the stack, checked on this photo (largest absolute differences)."""
    st.markdown("**Checked on this photo, right now** (largest absolute difference between the tensors):")
    checks = pd.DataFrame([{"claim": c["claim"], "compared with": c["compared"],
                            "max |difference|": c["max_abs_diff"], "holds": "✓" if c["holds"] else "✗"}
                           for c in stack.checks])
    st.dataframe(checks, hide_index=True, width="stretch",
                 column_config={"max |difference|": st.column_config.NumberColumn(format="%.3g")})
    if not all(c["holds"] for c in stack.checks):
        st.warning("A check failed on this trace: the model does not behave like the official code here.")


page.run(STEP, [answer, one_query_stack, whatif_view.lab_features], shapes=False)
