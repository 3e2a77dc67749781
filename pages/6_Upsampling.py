"""Step 6: upsampling with Res4, Res3, Res2 — the FPN-style mask head, stage by stage.

A thin view over detr_viz.explain.step6_upsampling: every number below is read from the live trace.
"""
import pandas as pd
import streamlit as st

from detr_viz.explain import step6_upsampling as up
from detr_viz.explain.common import dims
from ui import page, state

STEP = 6
ctx = page.setup(STEP)

VIEWS = {"first principal component": "pc1", "channel mean": "mean", "one channel": "channel"}


def render(ctx):
    t = ctx.trace
    D = dims(t)
    d, M, h, w, H, W = D.d, D.M, D.h, D.w, D.H, D.W
    h4, w4 = t.shape("pred_masks")[-2:]

    st.markdown(
        f"The curriculum says \"various operations are performed to upsample and clean the masks using "
        f"intermediate layers of the CNN backbone\". Here they are. Each query's stack of {d + M} × {h} × {w} "
        f"(page 5) goes through five conv blocks, `lay1` … `lay5`, each a 3×3 conv → GroupNorm(8, C) (C channels "
        f"in 8 groups, normalised per sample) → ReLU. After `lay2`, `lay3` and `lay4` the map is upsampled "
        f"(nearest neighbour) and a 1×1-conv *adapter* of a backbone feature map is **added**: Res4, then Res3, "
        f"then Res2. A last 3×3 conv, `out_lay`, gives one map of mask logits, {h4} × {w4}: 1/4 of the "
        f"{H} × {W} input.")
    plan = state.memo(t, "explain.upsampling.plan", lambda: up.channel_plan(t))
    st.dataframe(pd.DataFrame(plan), hide_index=True, width="stretch")
    st.caption("Channels and shapes are read from the model's modules and this trace. The adapters see only the "
               "backbone, so each `adapter{k}` is one tensor (batch 1), added to every query's map.")

    q = page.query_picker(ctx, key="upsampling_query")

    def memo(key, fn):                                      # the last few queries' views and pictures
        return state.memo(t, ("upsampling." + key[0],) + key[1:], fn, keep=12)

    st.subheader(f"The mask of query {q} taking shape, 1/{D.stride} → 1/4")
    stages = memo(("sharpening", q), lambda: up.sharpening(t, q, d))
    st.image(memo(("sharpening.png", q), lambda: up.sharpening_picture(stages)),
             width="stretch")
    st.caption(
        "All tiles are drawn at the same size, so the finer grids show as sharper pictures. Tile 1 is the "
        "query's only own input, the sum of its attention maps (viridis). Tiles 2–5 show the first principal "
        "component of each block's output: the one direction in channel space along which this query's map "
        "varies most. Its sign is chosen so that orange means \"like the final mask\" (purple negative, "
        "orange positive, symmetric scale). Tile 6 is the mask logits themselves. The correlation under "
        "each tile compares it with the final logits, averaged down to that tile's grid.")

    st.subheader("Stage by stage: upsampled path + backbone skip = sum")
    choice = st.radio("Draw the C channels of each tensor as one picture by", list(VIEWS), horizontal=True,
                      key="upsampling_view")
    st.caption("Each of these views is linear, so in every row the left and middle pictures add up to the right "
               "one exactly. The three pictures of a row share one symmetric scale: purple negative, white 0, "
               "orange positive. The principal component is that of the sum, with its sign chosen so that orange "
               "in the sum means \"like the final mask\".")

    st.markdown(f"**1/{D.stride}: `lay1`, `lay2`.** {t.shape('mask_head.concat')[1]} → "
                f"{t.shape('mask_head.relu1')[1]} → {t.shape('mask_head.relu2')[1]} channels on the {h} × {w} grid "
                f"(`mask_head.relu2`: {' × '.join(map(str, t.shape('mask_head.relu2')[1:]))} per query). "
                "Nothing is added yet: this is tile 2 above.")
    for k in (1, 2, 3):
        C = t.shape(f"mask_head.fpn{k}")[1]
        view = VIEWS[choice]
        if view == "channel":
            view = int(st.number_input(f"channel of fpn{k} (0 – {C - 1})", 0, C - 1, 0, key=f"upsampling_ch{k}"))
        level = memo(("fpn", q, k, view), lambda: up.fpn_level(t, q, k, view))
        src_hw, dst_hw = level.from_hw, level.total.shape
        after = f"mask_head.relu{k + 2}" if k < 3 else "mask_head.relu5"
        nxt = (f"`lay{k + 2}` then takes it from {C} to {t.shape(after)[1]} channels"
               if k < 3 else
               f"`lay5` takes it to {t.shape('mask_head.relu5')[1]} channels and `out_lay` to 1: the mask logits")
        st.markdown(
            f"**{level.resolution}: + {level.backbone}.** `up{k}` resizes query {q}'s {C}-channel map from "
            f"{src_hw[0]} × {src_hw[1]} to {dst_hw[0]} × {dst_hw[1]}, nearest neighbour, to the exact size of the "
            "skip "
            f"({up.size_note(src_hw, dst_hw)}). "
            f"`adapter{k}`, a 1×1 conv, turns {level.backbone} "
            f"({' × '.join(map(str, t.shape({1: 'backbone.res4', 2: 'backbone.res3', 3: 'backbone.res2'}[k])[1:]))}) "
            f"into {C} channels. Their sum is `fpn{k}` "
            f"(checked: max |up + adapter − fpn| = {level.max_sum_error:.2g}). "
            f"{nxt}.")
        st.image(memo(("fpn.png", q, k, view), lambda: up.fpn_picture(level)),
                 width="stretch")

    st.subheader(f"The result: query {q}'s mask logits, {h4} × {w4}")
    logits = memo(("logits", q), lambda: up.mask_logits(t, q))
    r = up.logit_range(logits)
    cols = st.columns(3)
    with cols[0]:
        st.image(memo(("logits.png", q), lambda: up.logits_picture(logits)),
                 width="stretch")
        st.caption(f"Logits (`pred_masks`), {r['min']:.2f} to {r['max']:.2f}: purple negative, orange positive.")
    with cols[1]:
        st.image(memo(("sigmoid.png", q), lambda: up.sigmoid_picture(logits)),
                 width="stretch")
        st.caption(f"sigmoid(logits), {r['p_min']:.2f} to {r['p_max']:.2f} (viridis, 0 to 1); "
                   f"{100 * r['share_positive']:.1f} % of the cells are above 0.5.")
    with cols[2]:
        st.image(memo(("overlay.png", q), lambda: up.mask_overlay(logits, t.image)),
                 width="stretch")
        st.caption("sigmoid(logits) over the photo.")
    st.info("The model outputs **logits**, not probabilities, and the merge (step 7) never applies a sigmoid "
            "or a 0.5 threshold: it compares the logits of all kept queries pixel by pixel.")


page.guard(render, ctx)
page.nav(STEP)
