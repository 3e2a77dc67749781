"""Step 6: upsampling with Res4, Res3, Res2 — the FPN-style mask head, stage by stage.

A thin view over detr_viz.explain.step6_upsampling: every number below is read from the live trace.
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from detr_viz.explain import step6_upsampling as up
from detr_viz.explain.common import dims, shape_str
from detr_viz.explain.step1_backbone import level_stride
from ui import page, state, whatif_view

STEP = 6
VIEWS = {"first principal component": "pc1", "channel mean": "mean", "one channel": "channel"}
SKIP_OF_FPN = {1: "backbone.res4", 2: "backbone.res3", 3: "backbone.res2"}


def overview(ctx: state.Context) -> None:
    """The five conv blocks and three skips in words, and the channel plan read from the model."""
    t = ctx.trace
    D = dims(t)
    r2 = level_stride(t, "backbone.res2")
    st.markdown(
        f"The curriculum says \"various operations are performed to upsample and clean the masks using "
        f"intermediate layers of the CNN backbone\". Here they are. Each query's stack of "
        f"{shape_str((D.d + D.M, D.h, D.w))} (page 5) goes through five conv blocks, `lay1` … `lay5`, each a "
        f"3x3 conv → GroupNorm(8, C) (C channels in 8 groups, normalised per sample) → ReLU. After `lay2`, `lay3` "
        f"and `lay4` the map is upsampled (nearest neighbour) and a 1x1-conv *adapter* of a backbone feature map "
        f"is **added**: Res4, then Res3, then Res2. A last 3x3 conv, `out_lay`, gives one map of mask logits, "
        f"{shape_str(t.shape('pred_masks')[-2:])}: 1/{r2} of the {shape_str((D.H, D.W))} input, because the last "
        f"and finest feature added is Res2, whose stride is {r2} (step 1).")
    st.dataframe(pd.DataFrame(up.channel_plan(t)), hide_index=True, width="stretch")
    st.caption("Channels and shapes are read from the model's modules and this trace. The adapters see only the "
               "backbone, so each `adapter{k}` is one tensor (batch 1), added to every query's map.")
    st.markdown(
        "**How these weights were learned.** DETR's panoptic models are trained in two phases. First the "
        "detector alone (backbone, transformer, class and box heads) learns to find every panoptic segment, stuff "
        "included, as a box with a class: that is why stuff gets boxes. Then the detector is **frozen**, and only "
        "the box attention and this mask head are trained, with a **focal loss plus a DICE loss** between each "
        "matched query's mask logits and its ground-truth mask; queries matched to no segment get no mask loss.")


def one_query(ctx: state.Context) -> None:
    """The query picker, then that query's mask head: taking shape, stage by stage, the result."""
    q = page.query_picker(ctx, key="upsampling_query")
    sharpening(ctx, q)
    stage_by_stage(ctx, q)
    mask_logits(ctx, q)


def sharpening(ctx: state.Context, q: int) -> None:
    """The query's mask taking shape from 1/32 (or 1/16) to 1/4."""
    t = ctx.trace
    st.subheader(f"The mask of query {q} taking shape, 1/{dims(t).stride} → 1/{level_stride(t, 'backbone.res2')}")
    st.image(up.sharpening_picture_of(t, q), width="stretch")
    st.caption(
        "All tiles are drawn at the same size, so the finer grids show as sharper pictures. Tile 1 is the "
        "query's only own input, the sum of its attention maps (viridis). Tiles 2–5 show the first principal "
        "component of each block's output: the one direction in channel space along which this query's map "
        "varies most. Its sign is chosen so that orange means \"like the final mask\" (purple negative, "
        "orange positive, symmetric scale). Tile 6 is the mask logits themselves. The correlation under "
        "each tile compares it with the final logits, averaged down to that tile's grid.")


def stage_by_stage(ctx: state.Context, q: int) -> None:
    """Each of the three skips: upsampled path + adapted backbone map = fpn_k, drawn by a chosen view."""
    t = ctx.trace
    D = dims(t)
    st.subheader("Stage by stage: upsampled path + backbone skip = sum")
    choice = st.radio("Draw the C channels of each tensor as one picture by", list(VIEWS), horizontal=True,
                      key="upsampling_view")
    st.caption("Each of these views is linear, so in every row the left and middle pictures add up to the right "
               "one exactly. The three pictures of a row share one symmetric scale: purple negative, white 0, "
               "orange positive. The principal component is that of the sum, with its sign chosen so that orange "
               "in the sum means \"like the final mask\".")
    st.markdown(f"**1/{D.stride}: `lay1`, `lay2`.** {t.shape('mask_head.concat')[1]} → "
                f"{t.shape('mask_head.relu1')[1]} → {t.shape('mask_head.relu2')[1]} channels on the "
                f"{shape_str((D.h, D.w))} grid (`mask_head.relu2`: {shape_str(t.shape('mask_head.relu2')[1:])} "
                "per query). Nothing is added yet: this is tile 2 above.")
    for k in (1, 2, 3):
        one_skip(ctx, q, k, VIEWS[choice])


def one_skip(ctx: state.Context, q: int, k: int, view: str) -> None:
    """Skip k (1..3): up_k of the query's map + adapter_k of Res(5-k) = fpn_k."""
    t = ctx.trace
    C = t.shape(f"mask_head.fpn{k}")[1]
    if view == "channel":
        view = int(st.number_input(f"channel of fpn{k} (0 – {C - 1})", 0, C - 1, 0, key=f"upsampling_ch{k}"))
    level = up.fpn_level(t, q, k, view)
    src_hw, dst_hw = level.from_hw, level.total.shape
    after = f"mask_head.relu{k + 2}" if k < 3 else "mask_head.relu5"
    nxt = (f"`lay{k + 2}` then takes it from {C} to {t.shape(after)[1]} channels"
           if k < 3 else
           f"`lay5` takes it to {t.shape('mask_head.relu5')[1]} channels and `out_lay` to 1: the mask logits")
    st.markdown(
        f"**{level.resolution}: + {level.backbone}.** `up{k}` resizes query {q}'s {C}-channel map from "
        f"{shape_str(src_hw)} to {shape_str(dst_hw)}, nearest neighbour, to the exact size of the skip "
        f"({up.size_note(src_hw, dst_hw)}). "
        f"`adapter{k}`, a 1x1 conv, turns {level.backbone} ({shape_str(t.shape(SKIP_OF_FPN[k])[1:])}) "
        f"into {C} channels. Their sum is `fpn{k}` "
        f"(checked: max |up + adapter − fpn| = {level.max_sum_error:.2g}). "
        f"{nxt}.")
    st.image(up.fpn_picture_of(t, q, k, view), width="stretch")


def mask_logits(ctx: state.Context, q: int) -> None:
    """The result: the query's mask logits, their sigmoid, and the sigmoid over the photo."""
    t = ctx.trace
    st.subheader(f"The result: query {q}'s mask logits, {shape_str(t.shape('pred_masks')[-2:])}")
    r = up.logit_range(up.mask_logits(t, q))
    cols = st.columns(3)
    with cols[0]:
        st.image(up.logits_picture_of(t, q), width="stretch")
        st.caption(f"Logits (`pred_masks`), {r['min']:.2f} to {r['max']:.2f}: purple negative, orange positive.")
    with cols[1]:
        st.image(up.sigmoid_picture_of(t, q), width="stretch")
        st.caption(f"sigmoid(logits), {r['p_min']:.2f} to {r['p_max']:.2f} (viridis, 0 to 1); "
                   f"{100 * r['share_positive']:.1f} % of the cells are above 0.5.")
    with cols[2]:
        st.image(up.mask_overlay_of(t, q), width="stretch")
        st.caption("sigmoid(logits) over the photo.")
    st.info("The model outputs **logits**, not probabilities, and the merge (step 7) never applies a sigmoid "
            "or a 0.5 threshold: it compares the logits of all kept queries pixel by pixel.")


page.run(STEP, [overview, one_query, whatif_view.lab_skips], shapes=False)
