"""Step 7: the merge — from K mask-logit maps to one panoptic map, as the official
PostProcessPanoptic does it, quirks included.

A thin view over detr_viz.explain.step7_merge and the intermediate fields of PanopticResult.
"""
import pandas as pd
import streamlit as st

from detr_viz.explain import step7_merge as merge
from detr_viz.explain.common import dims
from detr_viz.postprocess import SMALL_AREA
from detr_viz.viz import fit_width
from ui import page, state

STEP = 7
ctx = page.setup(STEP)
WIDTH = page.DISPLAY_WIDTH          # display width of the maps (projector-friendly)
K_PIXEL = "merge_pixel"             # (trace_key, (x, y) photo pixel) of the last click


def render(ctx):
    t = ctx.trace
    cats = t.categories
    D = dims(t)
    N, C1 = D.N, D.C + 1
    h4, w4 = t.shape("pred_masks")[-2:]

    threshold = page.threshold_slider(ctx)
    pan = ctx.panoptic                                   # the merge at the session threshold
    h, w = pan.processed_size
    Ht, Wt = pan.target_size
    kept = [int(q) for q in pan.kept]
    K = len(kept)
    key = round(threshold, 4)

    def memo(name, fn):                                     # pictures of the last few thresholds
        return state.memo(t, ("merge." + name, key), fn, keep=4)
    colors = memo("colors", lambda: merge.query_colors(pan, cats))
    small_photo = state.memo(t, "merge.photo", lambda: fit_width(t.pre.resized_image, WIDTH))   # the network input

    # ---- 1. the query filter -----------------------------------------------------------------
    st.subheader("1 · Which queries take part")
    st.markdown(
        f"For each of the N = {N} queries: softmax over its {C1} class logits (the last one is \"no object\"). "
        f"Its score is the largest probability and its label the argmax. A query is **kept** if its label is a "
        f"real class **and** its score is **strictly greater** than the threshold {threshold:.2f} (a score of "
        f"exactly {threshold:.2f} is not kept).")
    st.markdown(f"**Kept at {threshold:.2f}: {K} of {N} queries**" +
                (f": {', '.join(map(str, kept))}." if K else ". Lower the threshold to keep some."))
    rows = memo("filter", lambda: merge.filter_rows(pan, cats))
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", height=min(400, 36 + 35 * len(rows)),
                 column_config={"score": st.column_config.ProgressColumn(format="%.4f", min_value=0.0, max_value=1.0),
                                "kept": st.column_config.CheckboxColumn()})
    if not K:
        st.warning(f"No query passes {threshold:.2f}: the official post-processor then returns an empty list of "
                   "segments and an all-zero map. Lower the threshold with the slider above.")
        return

    legend = memo("legend", lambda: merge.query_legend(pan, cats, colors, width=2 * WIDTH))

    # ---- 2. per-pixel softmax and argmax -----------------------------------------------------------
    st.subheader("2 · Every pixel goes to the kept query with the highest mask")
    st.markdown(
        f"The {K} kept mask-logit maps ({h4} × {w4}, page 6) are first stretched **bilinearly to the network "
        f"input size, {h} × {w}** (height × width, as all sizes on this page). Then, at every pixel, softmax "
        f"over the {K} queries, and the argmax. The softmax does not change which query wins (it keeps the "
        f"order); it only says how clear the win is. "
        f"**There is no mask threshold and no \"void\":** every pixel gets one of the {K} kept queries, even where "
        f"all their logits are negative.")
    c1, c2 = st.columns(2)
    with c1:
        st.image(memo("before",
                            lambda: merge.owner_picture(pan.winner_before_merge, colors, WIDTH, small_photo)),
                 width="stretch")
        st.caption(f"Winner per pixel (`winner_before_merge`, {h} × {w}), white lines between queries.")
    with c2:
        conf = memo("confidence", lambda: merge.confidence_map(t, pan))
        st.image(memo("confidence.png", lambda: merge.confidence_picture(conf, WIDTH)),
                 width="stretch")
        st.caption(f"The winner's softmax probability, 0 to 1 (viridis), drawn on the {h4} × {w4} mask grid: "
                   "dark where two or more queries compete.")
    st.image(legend, width="stretch")

    # ---- 3. the stuff merge -------------------------------------------------------------------------
    st.subheader("3 · Stuff merge (first pass only)")
    if pan.stuff_merges:
        lines = [f"- *{m['name']}* (stuff): kept queries {', '.join(map(str, m['queries']))} → every pixel of "
                 f"{', '.join(map(str, m['queries'][1:]))} is relabelled to query {m['queries'][0]}, the first one."
                 for m in pan.stuff_merges]
        st.markdown("A stuff class (sky, grass, wall …) should be one segment. For every stuff label with two or "
                    "more kept queries, the pixels of all of them go to the **first** kept query of that label:\n" +
                    "\n".join(lines))
        moved = memo("moved",
                           lambda: merge.reassignments(pan.winner_before_merge, pan.winner_after_merge))
        c1, c2 = st.columns(2)
        with c1:
            st.image(memo("after",
                                lambda: merge.owner_picture(pan.winner_after_merge, colors, WIDTH, small_photo)),
                     width="stretch")
            st.caption("After the stuff merge (`winner_after_merge`).")
        with c2:
            st.image(memo("changed1",
                                lambda: merge.changed_picture(pan.winner_before_merge, pan.winner_after_merge,
                                                              colors, WIDTH, small_photo)), width="stretch")
            st.caption("Pixels that changed owner, in the new owner's colour.")
        st.dataframe(pd.DataFrame([{"from query": r["from"], "to query": r["to"], "pixels": r["pixels"]}
                                   for r in moved]), hide_index=True)
    else:
        st.markdown(f"No stuff class has two kept queries at {threshold:.2f}: nothing to merge, "
                    "the map stays as in step 2.")

    # ---- 4. the small-segment loop ------------------------------------------------------------------
    st.subheader(f"4 · Segments of at most {SMALL_AREA} pixels are dropped, and the argmax is redone")
    st.markdown(
        f"The map is resized (nearest neighbour) to the **target size {Ht} × {Wt}** (here the photo's own size, as "
        f"in the official evaluation) and each segment's area is counted there. Every segment of **≤ {SMALL_AREA} "
        f"px** is removed, and the argmax of step 2 is run again over the remaining queries, **without** the stuff "
        f"merge. This repeats until no segment is that small.")
    if pan.dropped:
        fates = memo("fates", lambda: merge.fate_of_dropped(pan))
        st.dataframe(pd.DataFrame([{"query": d["query"], "class": d["name"], "area (px)": d["area"],
                                    "round": d["round"], "why": d["reason"]} for d in pan.dropped]),
                     hide_index=True, width="stretch")
        for f in fates:
            went = ", ".join(f"query {q} ({cats.label(int(pan.labels[q]))}): {n:,} px" for q, n in f["went_to"])
            st.markdown(f"- **Query {f['query']} dropped.** In the first argmax it won {f['won_first_pass']:,} px"
                        + (f"; in the final map they belong to {went}." if f["won_first_pass"] else "."))
        if pan.stuff_merges:
            st.info(
                "**The official code's quirk, stated plainly.** After the stuff merge, every non-first query of a "
                "merged stuff class owns 0 px. So the ≤ 4 px loop always drops it, and the argmax is redone "
                "*without it and without the merge*. Its pixels go to whichever remaining query has the highest "
                "logit there. Usually that is the first query of the same stuff class, but not always (see the "
                "list above). The merged map of step 3 never reaches the output.")
        c1, c2 = st.columns(2)
        with c1:
            st.image(memo("final",
                                lambda: merge.owner_picture(pan.winner_final, colors, WIDTH, small_photo)),
                     width="stretch")
            st.caption(f"After the loop (`winner_final`, {h} × {w}).")
        with c2:
            ref = pan.winner_after_merge
            st.image(memo("changed2",
                                lambda: merge.changed_picture(ref, pan.winner_final, colors, WIDTH, small_photo)),
                     width="stretch")
            n = int((ref != pan.winner_final).sum())
            st.caption(f"Pixels whose owner differs from step 3's map: {n:,} of {h * w:,}.")
    else:
        st.markdown(f"No segment is that small at {threshold:.2f}: nothing is dropped.")

    # ---- 5. the panoptic map ----------------------------------------------------------------------------
    st.subheader("5 · The panoptic map")
    qm = memo("quarter", lambda: merge.quarter_map(t, pan))
    c1, c2 = st.columns(2)
    with c1:
        st.image(memo("quarter.png",
                            lambda: merge.owner_picture(qm.owner, colors, WIDTH, small_photo)), width="stretch")
        st.caption(f"At 1/4: the argmax of the {len(pan.segments)} surviving queries' raw logits on the "
                   f"{h4} × {w4} mask grid. This is the curriculum's \"1/4 of the original\".")
    with c2:
        st.image(memo("overlay", lambda: merge.display_overlay(t.image, pan, 2 * WIDTH)),
                 width="stretch")
        st.caption(f"The official result at the photo size, {Ht} × {Wt} (`id_map`).")
    st.markdown(
        f"The official code never takes the argmax at 1/4. It resizes the logits to {h} × {w} first, then resizes "
        f"the winner map to {Ht} × {Wt}. Enlarged to {h} × {w}, the 1/4 argmax gives the same owner for "
        f"**{100 * qm.agreement:.2f} %** of the pixels. Every other pixel lies within one mask cell of a border of "
        f"the 1/4 map: only there does the bilinear stretch mix the logits of cells with different winners.")
    legend_rows = merge.legend_rows(pan)
    if legend_rows:
        swatch = lambda col: [f"background-color: {c}; color: {c}" for c in col]      # the colour cell = a swatch
        st.dataframe(pd.DataFrame(legend_rows).style.apply(swatch, subset=["colour"]), hide_index=True,
                     width="stretch", column_config={"area (%)": st.column_config.NumberColumn(format="%.1f"),
                                                     "score": st.column_config.NumberColumn(format="%.4f")})
    rule = ("COCO panoptic names; thing/stuff by the official rule (class index ≤ 90 = thing)"
            if cats.name == "coco" else f"names and thing/stuff from the model's *{cats.name}* category table")
    st.caption(f"{len(pan.segments)} segments. {rule}. Areas in pixels of the photo. Segment ids start at 0 "
               "(in this output, id 0 is a real segment, not void).")

    # ---- 6. one pixel ------------------------------------------------------------------------------------
    st.subheader("6 · Click a pixel: why this label?")
    overlay = memo("overlay", lambda: merge.display_overlay(t.image, pan, 2 * WIDTH))
    photo_size = t.image.size                               # (W, H) = the target size of the merge
    saved = st.session_state.get(K_PIXEL)                   # a click on another image or model does not count
    clicked = saved[1] if saved and saved[0] == ctx.trace_key else None
    shown = merge.mark_point(overlay, merge.photo_to_display(clicked, photo_size, overlay.size)) if clicked \
        else overlay
    c1, c2 = st.columns([3, 2])
    with c1:
        xy = page.clickable_image(shown, key="merge_click", width=WIDTH)    # in `shown` pixels
    if xy is not None:
        xy = merge.display_to_photo(xy, overlay.size, photo_size)
    if xy is not None and xy != clicked:
        st.session_state[K_PIXEL] = (ctx.trace_key, xy)
        st.rerun()                    # redraw the cross-hair at the new pixel
    note = ""
    if clicked is None:
        xy = (Wt // 2, Ht // 2)
        note = "Showing the centre of the photo; click the picture to choose a pixel."
    else:
        xy = clicked
    rep = merge.pixel_report(t, pan, xy[0], xy[1], cats)
    with c2:
        if note:
            st.caption(note)
        st.markdown("\n\n".join(rep.steps))
    logit_chart, prob_chart = merge.pixel_charts(rep, colors)
    c1, c2 = st.columns(2)
    with c1:
        st.altair_chart(logit_chart, width="stretch")
    with c2:
        st.altair_chart(prob_chart, width="stretch")
    st.markdown(f"**Scores at photo pixel (x={rep.target_xy[0]}, y={rep.target_xy[1]})**, "
                f"network-input pixel (x={rep.processed_xy[0]}, y={rep.processed_xy[1]}):")
    st.dataframe(pd.DataFrame(rep.rows), hide_index=True, width="stretch",
                 column_config={"mask logit": st.column_config.NumberColumn(format="%+.3f"),
                                "p (all kept)": st.column_config.NumberColumn(format="%.3f"),
                                "p (survivors)": st.column_config.NumberColumn(format="%.3f")})
    st.caption("p (all kept): the softmax of the first argmax (step 2). p (survivors): the softmax of the last "
               "argmax, over the queries left after the small-segment loop (empty for dropped ones).")


page.guard(render, ctx)
page.nav(STEP)
