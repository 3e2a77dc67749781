"""Step 1 of 7: the CNN backbone. The input tensor, Res2..Res5, and Res5 -> input_proj."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from detr_viz.explain import step1_backbone as bb
from detr_viz.explain.common import dims, display_image, shape_str
from detr_viz.images import MEAN, STD
from ui import page, state

STEP = 1


WIDTH = page.DISPLAY_WIDTH          # display width of a picture (D.W is the network input's width)


def input_tensor(ctx: state.Context) -> None:
    """1. The resized, normalised photo that enters the network."""
    t = ctx.trace
    D = dims(t)
    st.header("1. The input tensor")
    info = bb.input_info(t)
    short, cap = t.config.input_size, t.config.max_input_size
    resize = (f"the shorter side is {short} pixels and the longer side at most {cap}" if cap
              else f"the shorter side is {short} pixels")
    st.markdown(
        f"The photo is **{D.W0} x {D.H0}** pixels (width x height). DETR resizes it so that {resize} "
        f"({bb.resize_note(t.config)}): **{D.W} x {D.H}** (x{info['scale']:.3f}). Then every "
        f"colour channel is normalised with ImageNet's statistics, x = (pixel / 255 - mean) / std, with "
        f"mean = ({', '.join(f'{m:.3f}' for m in MEAN)}) and std = ({', '.join(f'{s:.3f}' for s in STD)}) for "
        f"red, green, blue. The tensor `input` is **{shape_str(t.shape('input'))}**, its values run from "
        f"**{info['min']:.2f}** to **{info['max']:.2f}**: 0 means \"an average ImageNet pixel\", not black.")
    c1, c2 = st.columns(2, gap="large")
    with c1:
        st.image(display_image(t, WIDTH), caption=f"The photo, {D.W0} x {D.H0}", width="stretch")
    with c2:
        diff = bb.denormalize_check(t)
        st.image(bb.denormalized(t), caption=f"The tensor de-normalised (x * std + mean), {D.W} x {D.H}", width="stretch")
        st.caption(f"Undoing the normalisation gives back the resized photo: the largest difference is "
                   f"{diff} grey level{'s' if diff != 1 else ''} of 255 (rounding).")
    chans = bb.normalized_channels(t, 2 * WIDTH)
    st.markdown("What the network really receives: the three normalised channels, one colour scale for all "
                "three (white = 0, orange above, purple below).")
    cols = st.columns(3)
    for col, pic, row in zip(cols, chans, info["per_channel"]):
        col.image(pic, width="stretch",
                  caption=f"{row['channel']}: (p - {row['mean (ImageNet)']}) / {row['std (ImageNet)']}, "
                          f"{row['min']:.2f} .. {row['max']:.2f}")


def feature_maps(ctx: state.Context) -> None:
    """2. Res2 .. Res5: the table of the four levels, then one level's channels."""
    t = ctx.trace
    D = dims(t)
    st.header("2. Res2 .. Res5: four feature maps")
    rows = bb.levels(t)
    r5 = rows[-1]
    st.markdown(
        f"The backbone is a {D.backbone.replace('resnet', 'ResNet-')}"
        f"{' with frozen batch norm' if t.config.frozen_bn else ''}. Its stem (7x7 conv, stride 2, then a 3x3 "
        f"max-pool, stride 2) divides the size by 4; Res2 keeps that size, Res3, Res4 and Res5 each halve it"
        f"{' (except Res5 here: with DC5 its convolutions are dilated instead, stride 16)' if D.stride == 16 else ''}."
        f" Odd sizes round up. DETR keeps the output of every stage: **Res2 .. Res4 wait for the mask head "
        f"(step 6)**, and **Res5** ({shape_str((r5['channels'], r5['height'], r5['width']))}, stride {r5['stride']}) goes "
        f"on to the transformer. Every stage ends with a ReLU, so the maps are never negative, and many values "
        f"are exactly 0.")
    st.dataframe(pd.DataFrame([{k: r[k] for k in ("level", "stage", "channels", "height", "width", "stride",
                                                   "size check", "zeros", "max")} for r in rows]),
                 hide_index=True, width="stretch",
                 column_config={"zeros": st.column_config.NumberColumn("share of zeros", format="percent"),
                                "max": st.column_config.NumberColumn("largest value", format="%.2f")})
    one_level(ctx, rows)


def one_level(ctx: state.Context, rows: list[dict]) -> None:
    """The 16 most active channels of a chosen level, and one channel large."""
    t = ctx.trace
    names = bb.level_names(t)
    level = st.segmented_control("Level", names, default=names[-1], format_func=bb.level_label, key="bb_level")
    level = level or names[-1]
    row = rows[names.index(level)]
    top = bb.most_active(t, level, 16)
    st.markdown(f"The 16 channels of **{bb.level_label(level)}** with the highest average activation, out of "
                f"{row['channels']} ({shape_str((row['height'], row['width']))} each, one cell = {row['stride']} x "
                f"{row['stride']} pixels of the input). Each map is scaled on its own (viridis: dark = 0, "
                "yellow = its largest value).")
    grid = bb.channels_grid(t, level, top, 2 * WIDTH, ncols=4)
    c1, c2 = st.columns([1, 1], gap="large")
    with c1:
        st.image(grid, width="stretch")
    with c2:
        ch = st.number_input(f"Channel to see large (0 .. {row['channels'] - 1}); the most active is {top[0]}",
                             min_value=0, max_value=row["channels"] - 1, value=top[0], step=1,
                             key=f"bb_channel_{level}")
        alone, over = bb.channel_picture(t, level, int(ch), WIDTH)
        f = t[level][0, int(ch)]
        tab1, tab2 = st.tabs(["over the photo", "the map alone"])
        tab1.image(over, width="stretch")
        tab2.image(alone, width="stretch")
        st.caption(f"{bb.level_label(level)}, channel {int(ch)}: values {float(f.min()):.2f} .. {float(f.max()):.2f}, "
                   f"average {float(f.mean()):.3f}, zero in {float((f == 0).float().mean()):.0%} of the cells.")


def input_projection(ctx: state.Context) -> None:
    """3. Res5 -> input_proj, the 1x1 conv to d channels, checked live, and both as pictures."""
    t = ctx.trace
    D = dims(t)
    st.header("3. Res5 -> input_proj: from C5 to d channels")
    pj = bb.input_proj_info(ctx.model)
    err = bb.input_proj_check(t)
    st.markdown(
        f"`input_proj` is a **1x1 convolution**: weight {shape_str(pj['weight'])} plus a bias of "
        f"{pj['bias'][0]}, **{pj['parameters']:,} parameters**. At each of the {D.h} x {D.w} = {D.hw} cells it "
        f"multiplies the cell's {pj['in']} Res5 numbers by a {pj['out']} x {pj['in']} matrix and adds the bias: "
        f"**{pj['in']} x {D.h} x {D.w} -> {pj['out']} x {D.h} x {D.w}**, the width d = {D.d} the transformer "
        f"works with. Nothing mixes between cells. (Checked live: W · Res5 + b at every cell gives the traced "
        f"`input_proj` to within {err:.1e}.) This map goes into the encoder (step 2), and again, unchanged, "
        f"into the concat of step 5.")
    pca5, var5 = bb.pca_picture(t, "backbone.res5", WIDTH)
    pcap, varp = bb.pca_picture(t, "input_proj", WIDTH)
    c1, c2 = st.columns(2, gap="large")
    c1.image(pca5, width="stretch", caption=f"Res5 ({D.C5} channels): 3 principal components as red, green, "
                                            f"blue ({var5:.0%} of the variance)")
    c2.image(pcap, width="stretch", caption=f"input_proj(Res5) ({D.d} channels): 3 principal components "
                                            f"({varp:.0%} of the variance)")
    st.caption("Cells of similar colour have similar feature vectors. The colours of the two pictures are not "
               "comparable: each has its own components.")


page.run(STEP, [input_tensor, feature_maps, input_projection])
