"""Step 2 of 7: the transformer encoder, and where the encoded image (d x H/32 x W/32) comes from."""
from __future__ import annotations

import streamlit as st

from detr_viz.explain import step2_encoder as enc
from detr_viz.explain.common import box_cell, cell_of_pixel, dims, display_image, marked_photo, shape_str
from detr_viz.explain.step3_decoder import real_class_ranking
from ui import page, state

STEP = 2
CLICK_KEY = "enc_click"
WIDTH = page.DISPLAY_WIDTH          # display width of a picture (D.W is the network input's width)


def default_cell(ctx):
    """Before any click: the cell under the centre of the most confident query's box."""
    t = ctx.trace
    kept = list(ctx.panoptic.kept)
    q = int(kept[int(ctx.panoptic.scores[kept].argmax())]) if kept else real_class_ranking(t)[0]
    return box_cell(t, t["pred_boxes"][0, q])


def answer(ctx: state.Context) -> None:
    """The curriculum's question answered: the encoded image is the encoder's output, `memory`."""
    t = ctx.trace
    D = dims(t)
    chk = enc.memory_check(t)
    st.header("The answer: it is the encoder's output, `memory`")
    st.success(
        f"The encoded image is the output of the transformer **encoder**, called `memory`: "
        f"**{shape_str((D.d, D.h, D.w))}** for this photo (d = {D.d}; the network input is {D.H} x {D.W}, and "
        f"{D.H}/{D.stride} -> {D.h}, {D.W}/{D.stride} -> {D.w}, rounded up).  \n"
        f"It is made from **input_proj(Res5)** (step 1: Res5's {D.C5} channels projected to {D.d}), flattened "
        f"into {D.hw} tokens of {D.d} numbers, one per cell, and passed through **{D.enc_layers} encoder "
        f"layer{'s' if D.enc_layers != 1 else ''}** (self-attention among all {D.hw} cells, then a small MLP "
        f"per cell; each adds its result to its input, a residual connection, and then applies a LayerNorm). "
        f"The **sine position encoding** is added to the queries and keys of every self-attention, not to the values and not to the output.  \n"
        f"There is no final norm after the last layer: `memory` is exactly the output of "
        f"`{chk['last_layer']}` reshaped from {D.hw} x 1 x {D.d} to 1 x {D.d} x {D.h} x {D.w} (checked live: "
        f"largest difference {chk['last_layer_diff']:.1e}). The same tensor is what the decoder attends to "
        f"(step 3: keys = memory + positions, values = memory) and what the box attention computes its keys "
        f"from (step 4).")


def position_encoding(ctx: state.Context) -> None:
    """The sine position encoding: its formula, a few channels, checked against the trace."""
    t = ctx.trace
    D = dims(t)
    st.header("The sine position encoding")
    perr = enc.position_check(t)
    st.markdown(
        f"Self-attention by itself does not know where a cell is, so every cell gets a fixed {D.d}-number "
        f"code of its position. The first {D.d // 2} channels encode the row y, the last {D.d // 2} the column "
        f"x; even channels are sines, odd channels cosines, and each pair runs at a slower frequency than the "
        f"one before:")
    st.latex(rf"\hat y = 2\pi\,\frac{{\mathrm{{row}} + 1}}{{{D.h}}},\quad "
             rf"\mathrm{{PE}}_{{2i}} = \sin\!\Big(\frac{{\hat y}}{{10000^{{2i/{D.d // 2}}}}}\Big),\quad "
             rf"\mathrm{{PE}}_{{2i+1}} = \cos\!\Big(\frac{{\hat y}}{{10000^{{2i/{D.d // 2}}}}}\Big),"
             rf"\quad i = 0..{D.d // 4 - 1}")
    st.image(enc.position_grid(t, 2 * WIDTH), width="stretch",
             caption=f"A few of the {D.d} position channels over the {D.h} x {D.w} grid (PuOr: orange = +1, "
                     f"white = 0, purple = -1). The same formula with the column gives the x channels"
                     + ("." if perr != perr else f"; recomputed from it, they match the traced `position` to "
                                                 f"{perr:.1e}."))


def encoded_image(ctx: state.Context) -> None:
    """The encoded image as pictures: its principal components and the length of each cell's vector."""
    t = ctx.trace
    D = dims(t)
    chk = enc.memory_check(t)
    st.header("The encoded image as a picture")
    c1, c2 = st.columns(2, gap="large")
    with c1:
        st.image(enc.memory_pca(t, WIDTH), width="stretch",
                 caption=f"memory ({shape_str((D.d, D.h, D.w))}): its 3 principal components as red, green, blue. "
                         "Cells of similar colour have similar vectors.")
    with c2:
        norm = enc.memory_norm(t)
        st.image(enc.memory_norm_picture(t, WIDTH), width="stretch",
                 caption=f"The length (L2 norm) of each cell's {D.d}-vector: {norm.min():.2f} .. {norm.max():.2f} "
                         f"(viridis). Every encoder layer ends with a LayerNorm, which gives each cell's vector mean "
                         f"0 and variance 1 (length sqrt({D.d}) = {D.d ** 0.5:.2f}) before its learned scale and "
                         f"shift; the norms differ only through those.")
    st.caption(f"Compared with input_proj(Res5), the encoder changed each value by {chk['changed_from_input']:.2f} "
               f"on average (the input's values average {chk['input_mean_abs']:.2f} in size); the cosine "
               f"similarity of a cell's vector before and after the encoder averages {chk['cosine_to_input']:.2f}.")


def self_attention(ctx: state.Context) -> None:
    """Encoder self-attention of a clicked cell: the layer and head pickers, the photo, the maps."""
    t = ctx.trace
    D = dims(t)
    st.header("Where does one cell look? Encoder self-attention")
    st.markdown(f"Click a point on the photo. Its cell of the {D.h} x {D.w} grid asks all {D.hw} cells "
                f"(itself included) how relevant they are; each of the {D.M} heads spreads exactly 1 over them "
                "(a softmax per head). The picture on the right shows where the attention goes.")
    c1, c2, c3 = st.columns([1, 1, 1])
    layer = c1.selectbox("Encoder layer", list(range(D.enc_layers)), index=D.enc_layers - 1,
                         format_func=lambda i: f"layer {i + 1} of {D.enc_layers}", key="enc_layer")
    mode = c2.segmented_control("Heads", ["average", "each head"], default="average", key="enc_heads") or "average"
    shared = c3.toggle("One colour scale for all heads", value=False, key="enc_shared",
                       disabled=mode != "each head")

    left, right = st.columns(2, gap="large")
    with left:
        cell = clicked_cell(ctx)
    with right:
        attention_of_cell(ctx, layer, cell, mode, shared)


def clicked_cell(ctx: state.Context) -> tuple[int, int]:
    """The photo with the chosen cell outlined (click to choose another); returns the cell."""
    t = ctx.trace
    D = dims(t)
    photo = display_image(t, WIDTH)
    click = st.session_state.get(CLICK_KEY)
    shown = (click.get("width", photo.width), click.get("height", photo.height)) if click else None
    cell = cell_of_pixel(t, click["x"], click["y"], shown) if click else default_cell(ctx)
    page.clickable_image(marked_photo(t, cell, WIDTH), CLICK_KEY, width=WIDTH)
    st.caption(f"{'Clicked' if click else 'Not clicked yet, showing'} cell row {cell[0]}, column {cell[1]} "
               f"(pixels {cell[1] * D.stride}..{min(D.W, (cell[1] + 1) * D.stride) - 1} x "
               f"{cell[0] * D.stride}..{min(D.H, (cell[0] + 1) * D.stride) - 1} of the {D.W} x {D.H} input).")
    return cell


def attention_of_cell(ctx: state.Context, layer: int, cell, mode: str, shared: bool) -> None:
    """Where the cell looks in this layer: the mean of the heads, or each head, with numbers."""
    t = ctx.trace
    D = dims(t)
    maps = enc.cell_attention(t, layer, cell)               # (M, h, w)
    if mode == "average":
        s = enc.attention_summary(maps.mean(0), cell)       # of the (h, w) mean
        st.image(enc.average_attention_picture(t, layer, cell, WIDTH), width="stretch")
        st.markdown(
            f"**Layer {layer + 1}, average of the {D.M} heads** (what nn.MultiheadAttention reports by default). "
            f"The cell keeps **{s['self']:.1%}** for itself; the 5 strongest cells get {s['top_share']:.0%}; "
            f"the attention is spread over about **{s['effective_cells']:.0f}** of {s['cells']} cells "
            f"(exp of its entropy). Sum of the map: {s['sum']:.4f}.")
    else:
        st.image(enc.heads_attention_picture(t, layer, cell, 2 * WIDTH, shared_scale=shared), width="stretch")
        per = [enc.attention_summary(maps[m], cell) for m in range(D.M)]
        scale = "one scale" if shared else "each map on its own scale"
        st.markdown(f"**Layer {layer + 1}, each head** ({scale}). "
                    "Spread over about " + ", ".join(f"{p['effective_cells']:.0f}" for p in per)
                    + f" cells (heads 1..{D.M}); each head's map sums to 1 "
                    f"({min(p['sum'] for p in per):.4f} .. {max(p['sum'] for p in per):.4f}).")


page.run(STEP, [answer, position_encoding, encoded_image, self_attention])
