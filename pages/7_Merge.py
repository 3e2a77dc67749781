"""Step 7: the merge — from K mask-logit maps to one panoptic map, as the official
PostProcessPanoptic does it, quirks included.

A thin view over detr_viz.explain.step7_merge and the intermediate fields of PanopticResult.
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from detr_viz.explain import step7_merge as merge
from detr_viz.explain import step7_merge_pixel as pixel
from detr_viz.explain.common import dims, shape_str
from detr_viz.explain.step1_backbone import level_stride
from detr_viz.postprocess import SMALL_AREA
from ui import page, state, whatif_view

STEP = 7
WIDTH = page.DISPLAY_WIDTH          # display width of the maps (projector-friendly)
K_PIXEL = "merge_pixel"             # (trace_key, (x, y) photo pixel) of the last click


def answer(ctx: state.Context) -> None:
    """The curriculum's last step answered: a full-size panoptic map, and how it is made (live sizes)."""
    t, pan = ctx.trace, ctx.panoptic
    D = dims(t)
    h4, w4 = t.shape("pred_masks")[-2:]
    r2 = level_stride(t, "backbone.res2")
    things = sum(1 for s in pan.segments if s["isthing"])
    st.header("The answer: one full-size map, one segment per pixel")
    how = (f"from the **{len(pan.kept)} kept queries**' mask logits ({shape_str((h4, w4))}, 1/{r2} of the "
           f"{shape_str((D.H, D.W))} input): stretched to the input size, each pixel given to the highest logit, "
           f"stuff of one class merged, segments of at most {SMALL_AREA} px dropped and the argmax redone, then the "
           f"map resized (nearest neighbour) to the photo")
    result = (f"Here: **{len(pan.segments)} segments** ({things} things, {len(pan.segments) - things} stuff) at "
              f"threshold {pan.threshold:.2f}." if pan.kept.size else
              f"Here no query passes the threshold {pan.threshold:.2f}, so the map has no segment at all.")
    st.success(f"The panoptic map is **{shape_str(pan.target_size)}**, the photo's own size, not 1/{r2}: every pixel "
               f"gets a segment id, and each segment a class (thing or stuff). It is made {how}. {result}")


def query_filter(ctx: state.Context) -> bool:
    """1 · The threshold and which queries take part; False (the page ends here) if none is kept."""
    D = dims(ctx.trace)
    threshold = page.threshold_slider(ctx)
    pan = ctx.panoptic                                   # the merge at the session threshold
    kept = [int(q) for q in pan.kept]
    st.subheader("1 · Which queries take part")
    st.markdown(
        f"For each of the N = {D.N} queries: softmax over its {D.C + 1} class logits (the last one is \"no "
        f"object\"). Its score is the largest probability and its label the argmax. A query is **kept** if its "
        f"label is a real class **and** its score is **strictly greater** than the threshold {threshold:.2f} (a "
        f"score of exactly {threshold:.2f} is not kept).")
    st.markdown(f"**Kept at {threshold:.2f}: {len(kept)} of {D.N} queries**" +
                (f": {', '.join(map(str, kept))}." if kept else ". Lower the threshold to keep some."))
    rows = merge.filter_rows_at(ctx.trace, threshold)
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", height=min(400, 36 + 35 * len(rows)),
                 column_config={"score": st.column_config.ProgressColumn(format="%.4f", min_value=0.0, max_value=1.0),
                                "kept": st.column_config.CheckboxColumn()})
    if not kept:
        st.warning(f"No query passes {threshold:.2f}: the official post-processor then returns an empty list of "
                   "segments and an all-zero map. Lower the threshold with the slider above.")
        return False
    return True


def pixel_argmax(ctx: state.Context) -> None:
    """2 · Per-pixel softmax and argmax over the kept queries' stretched mask logits."""
    t, thr, pan = ctx.trace, ctx.threshold, ctx.panoptic
    K = len(pan.kept)
    h4, w4 = t.shape("pred_masks")[-2:]
    st.subheader("2 · Every pixel goes to the kept query with the highest mask")
    st.markdown(
        f"The {K} kept mask-logit maps ({shape_str((h4, w4))}, page 6) are first stretched **bilinearly to the "
        f"network input size, {shape_str(pan.processed_size)}** (height x width, as all sizes on this page). Then, "
        f"at every pixel, softmax over the {K} queries, and the argmax. The softmax does not change which query "
        f"wins (it keeps the order); it only says how clear the win is. "
        f"**There is no mask threshold and no \"void\":** every pixel gets one of the {K} kept queries, even where "
        f"all their logits are negative.")
    c1, c2 = st.columns(2)
    with c1:
        st.image(merge.owner_picture_at(t, thr, "before_merge", WIDTH), width="stretch")
        st.caption(f"Winner per pixel (`winner_before_merge`, {shape_str(pan.processed_size)}), white lines "
                   "between queries.")
    with c2:
        st.image(merge.confidence_picture_at(t, thr, WIDTH), width="stretch")
        st.caption(f"The winner's softmax probability, 0 to 1 (viridis), drawn on the {shape_str((h4, w4))} mask "
                   "grid: dark where two or more queries compete.")
    st.image(merge.legend_at(t, thr, 2 * WIDTH), width="stretch")


def stuff_merge(ctx: state.Context) -> None:
    """3 · The stuff merge: a stuff class's kept queries become its first one (first pass only)."""
    t, thr, pan = ctx.trace, ctx.threshold, ctx.panoptic
    st.subheader("3 · Stuff merge (first pass only)")
    if not pan.stuff_merges:
        st.markdown(f"No stuff class has two kept queries at {thr:.2f}: nothing to merge, "
                    "the map stays as in step 2.")
        return
    lines = [f"- *{m['name']}* (stuff): kept queries {', '.join(map(str, m['queries']))} → every pixel of "
             f"{', '.join(map(str, m['queries'][1:]))} is relabelled to query {m['queries'][0]}, the first one."
             for m in pan.stuff_merges]
    st.markdown("A stuff class (sky, grass, wall …) should be one segment. For every stuff label with two or "
                "more kept queries, the pixels of all of them go to the **first** kept query of that label:\n" +
                "\n".join(lines))
    c1, c2 = st.columns(2)
    with c1:
        st.image(merge.owner_picture_at(t, thr, "after_merge", WIDTH), width="stretch")
        st.caption("After the stuff merge (`winner_after_merge`).")
    with c2:
        st.image(merge.changed_picture_at(t, thr, "before_merge", "after_merge", WIDTH), width="stretch")
        st.caption("Pixels that changed owner, in the new owner's colour.")
    st.dataframe(pd.DataFrame([{"from query": r["from"], "to query": r["to"], "pixels": r["pixels"]}
                               for r in merge.reassignments_at(t, thr)]), hide_index=True)


def small_segments(ctx: state.Context) -> None:
    """4 · The small-segment loop: segments of at most SMALL_AREA px are dropped and the argmax redone."""
    t, thr, pan = ctx.trace, ctx.threshold, ctx.panoptic
    st.subheader(f"4 · Segments of at most {SMALL_AREA} pixels are dropped, and the argmax is redone")
    st.markdown(
        f"The map is resized (nearest neighbour) to the **target size {shape_str(pan.target_size)}** (here the "
        f"photo's own size, as in the official evaluation) and each segment's area is counted there. Every segment "
        f"of **≤ {SMALL_AREA} px** is removed, and the argmax of step 2 is run again over the remaining queries, "
        f"**without** the stuff merge. This repeats until no segment is that small.")
    if not pan.dropped:
        st.markdown(f"No segment is that small at {thr:.2f}: nothing is dropped.")
        return
    st.dataframe(pd.DataFrame([{"query": d["query"], "class": d["name"], "area (px)": d["area"],
                                "round": d["round"], "why": d["reason"]} for d in pan.dropped]),
                 hide_index=True, width="stretch")
    for f in merge.fate_of_dropped_at(t, thr):
        went = ", ".join(f"query {q} ({t.categories.label(int(pan.labels[q]))}): {n:,} px" for q, n in f["went_to"])
        st.markdown(f"- **Query {f['query']} dropped.** In the first argmax it won {f['won_first_pass']:,} px"
                    + (f"; in the final map they belong to {went}." if f["won_first_pass"] else "."))
    if pan.stuff_merges:
        st.info(
            "**The official code's quirk, stated plainly.** After the stuff merge, every non-first query of a "
            "merged stuff class owns 0 px. So the ≤ 4 px loop always drops it, and the argmax is redone "
            "*without it and without the merge*. Its pixels go to whichever remaining query has the highest "
            "logit there. Usually that is the first query of the same stuff class, but not always (see the "
            "list above). The merged map of step 3 never reaches the output.")
    h, w = pan.processed_size
    c1, c2 = st.columns(2)
    with c1:
        st.image(merge.owner_picture_at(t, thr, "final", WIDTH), width="stretch")
        st.caption(f"After the loop (`winner_final`, {shape_str((h, w))}).")
    with c2:
        st.image(merge.changed_picture_at(t, thr, "after_merge", "final", WIDTH), width="stretch")
        n = int((pan.winner_after_merge != pan.winner_final).sum())
        st.caption(f"Pixels whose owner differs from step 3's map: {n:,} of {h * w:,}.")


def panoptic_map(ctx: state.Context) -> None:
    """5 · The panoptic map: the 1/4 argmax next to the official result, and the legend of segments."""
    t, thr, pan = ctx.trace, ctx.threshold, ctx.panoptic
    cats = t.categories
    qm = merge.quarter_map_at(t, thr)
    processed, target = shape_str(pan.processed_size), shape_str(pan.target_size)
    st.subheader("5 · The panoptic map")
    c1, c2 = st.columns(2)
    with c1:
        st.image(merge.quarter_picture_at(t, thr, WIDTH), width="stretch")
        st.caption(f"At 1/4: the argmax of the {len(pan.segments)} surviving queries' raw logits on the "
                   f"{shape_str(t.shape('pred_masks')[-2:])} mask grid. This is the curriculum's \"1/4 of the "
                   "original\".")
    with c2:
        st.image(merge.display_overlay_at(t, thr, 2 * WIDTH), width="stretch")
        st.caption(f"The official result at the photo size, {target} (`id_map`).")
    st.markdown(
        f"The official code never takes the argmax at 1/4. It resizes the logits to {processed} first, then resizes "
        f"the winner map to {target}. Enlarged to {processed}, the 1/4 argmax gives the same owner for "
        f"**{100 * qm.agreement:.2f} %** of the pixels. Every other pixel lies within one mask cell of a border of "
        f"the 1/4 map: only there does the bilinear stretch mix the logits of cells with different winners.")
    legend_rows = merge.legend_rows(pan)
    if legend_rows:
        swatch = lambda col: [f"background-color: {c}; color: {c}" for c in col]      # the colour cell = a swatch
        st.dataframe(pd.DataFrame(legend_rows).style.apply(swatch, subset=["colour"]), hide_index=True,
                     width="stretch", column_config={"area (%)": st.column_config.NumberColumn(format="%.1f"),
                                                     "score": st.column_config.NumberColumn(format="%.4f")})
    rule = ("COCO panoptic names; thing/stuff by the official rule (class index ≤ 90 = thing)"
            if cats.name == "coco" else f"names and thing/stuff from the model's *{cats.name}* category table"
            + (" (thing/stuff is a guess: no categories file, so every class is taken for a thing)"
               if cats.isthing_guessed else ""))
    st.caption(f"{len(pan.segments)} segments. {rule}. Areas in pixels of the photo. Segment ids start at 0 "
               "(in this output, id 0 is a real segment, not void).")


def one_pixel(ctx: state.Context) -> None:
    """6 · Click a pixel of the map: why it has this label, step by step, with every kept query's scores."""
    t, pan = ctx.trace, ctx.panoptic
    st.subheader("6 · Click a pixel: why this label?")
    overlay = merge.display_overlay_at(t, ctx.threshold, 2 * WIDTH)
    photo_size = t.image.size                               # (W, H) = the target size of the merge
    saved = st.session_state.get(K_PIXEL)                   # a click on another image or model does not count
    clicked = saved[1] if saved and saved[0] == ctx.trace_key else None
    shown = pixel.mark_point(overlay, pixel.photo_to_display(clicked, photo_size, overlay.size)) if clicked \
        else overlay
    c1, c2 = st.columns([3, 2])
    with c1:
        xy = page.clickable_image(shown, key="merge_click", width=WIDTH)    # in `shown` pixels
    if xy is not None:
        xy = pixel.display_to_photo(xy, overlay.size, photo_size)
    if xy is not None and xy != clicked:
        st.session_state[K_PIXEL] = (ctx.trace_key, xy)
        st.rerun()                    # redraw the cross-hair at the new pixel
    note = ""
    if clicked is None:
        Ht, Wt = pan.target_size
        xy = (Wt // 2, Ht // 2)
        note = "Showing the centre of the photo; click the picture to choose a pixel."
    else:
        xy = clicked
    rep = pixel.pixel_report(t, pan, xy[0], xy[1], t.categories)
    with c2:
        if note:
            st.caption(note)
        st.markdown("\n\n".join(rep.steps))
    pixel_scores(rep, merge.colors_at(t, ctx.threshold))


def pixel_scores(rep: pixel.PixelReport, colors: dict) -> None:
    """The charts and the table of one pixel's scores."""
    logit_chart, prob_chart = pixel.pixel_charts(rep, colors)
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


page.run(STEP, [answer, query_filter, pixel_argmax, stuff_merge, small_segments, panoptic_map, one_pixel,
                whatif_view.lab_merge], shapes=False)
