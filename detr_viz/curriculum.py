"""The curriculum, answered: its questions 1-3 and steps 4.1-4.6, each with this trace's numbers.

The curriculum (a student's notes on DETR's panoptic head) asks three questions and then explains
the head in six steps. `answers(trace)` quotes each one in order, names the step (`stages.STEPS`)
whose page answers it, answers it in one or two sentences with the trace's live numbers, and says
plainly where the curriculum's own answer is loose or wrong, with live checks as evidence. Every
stride, size and channel count comes from the model's config or the trace, so the text is true
for R50, R50-DC5 and the toy model alike.

`box_independence(trace)` is the live demonstration that the box coordinates play no part in the
masks: it moves a query's box, reruns the panoptic branch, and finds the mask logits unchanged.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch

from .cache import cached
from .detr import Detection
from .explain import dims
from .explain.step1_backbone import level_stride
from .explain.step5_concat_res5 import concat_stack
from .postprocess import SMALL_AREA, postprocess_panoptic
from .stages import STEPS

RIGHT, LOOSE, WRONG = "right", "loose", "wrong"      # the verdicts on the curriculum's own answer


@dataclass(frozen=True)
class Item:
    """One curriculum entry, quoted: its question or step, the curriculum's own answer, and the step
    (number in `STEPS`) whose page answers it."""
    key: str
    quote: str
    given: str
    step: int


ITEMS = (
    Item("1", "We take the encoded image (dxH/32xW/32) and send it to Multi-Head Attention "
              "(FROM WHERE DO WE TAKE THIS ENCODED IMAGE?)",
         "The Encoded Image is taken from the DETR Encoder Output, by default d=256.", 2),
    Item("2", "We also send dxN Box embeddings to the Multi-Head Attention. We do something here to "
              "generate NxMxH/32xW/32 maps. (WHAT DO WE DO HERE?)",
         "We use Multi-head attention layer to generate Attention Scores over the Encoded Image "
         "(dxH/32xW/32) for each Object Embedding (N).", 4),
    Item("3", "Then we concatenate these maps with Res5 Block (WHERE IS THIS COMING FROM?)",
         "This comes from the CNN Backbone of DETR, when the Image is passed by CNN Backbone, Activations "
         "from the Intermediate layers (Res 5, Res4, Res3 ad Res 2) are set aside.", 5),
    Item("4.1", "DETR Predicts the BBox for thing (your class) and Stuffs in the image.", "", 3),
    Item("4.2", "These BBox along with Encoded Image (from the Encoder Output) is sent to the Multi Head "
                "Attention Layer.", "", 4),
    Item("4.3", "This Layer generates the Attention Maps for the passed Bboxes using Encoded Image.", "", 4),
    Item("4.4", "These Attention Maps are concatenated with Res 5 (output of CNN Backbone Intermediate Layer) "
                "and various operations are performed to Upsample and Clean the Masks using intermediate "
                "layers output of the CNN backbone.", "", 6),
    Item("4.5", "Finally we merge the masks by classigying each pixel to the mask with highest Probability.", "", 7),
    Item("4.6", "Resultant image is the Panoptic Segmentation of the Original Image with dimension 1/4 of the "
                "Original Image.", "", 7),
)


@dataclass(frozen=True)
class Answer:
    """An item answered for one trace (plain data: `to_dict()` is JSON-serialisable)."""
    key: str
    quote: str
    given: str
    step: int                   # STEPS number of the page that answers it
    step_key: str               # STEPS[step - 1].key
    step_title: str
    answer: str                 # one or two sentences with the live numbers
    rating: str                 # RIGHT, LOOSE or WRONG: the curriculum's own statement, for this model
    verdict: str                # what is loose or wrong in it ("" when right)
    checks: tuple = field(default_factory=tuple)   # dicts: claim, value, holds (live evidence)

    def to_dict(self) -> dict:
        return asdict(self)


def focus_query(trace) -> int:
    """The query the lesson talks about: the largest thing segment's (else the largest segment's),
    else the first query the mask head ran for."""
    segs = trace.panoptic.segments if trace.panoptic is not None else []
    pool = [s for s in segs if s["isthing"]] or segs
    if pool:
        return int(max(pool, key=lambda s: (s["area"], -s["query"]))["query"])
    return int(trace.mask_queries[0])


def other_stride(stride: int) -> int:
    """The stride the curriculum's reader might wrongly assume: 16 for a stride-32 model, else 32."""
    return 16 if stride == 32 else 32


def _check(claim: str, value, holds: bool) -> dict:
    return {"claim": claim, "value": value if isinstance(value, (int, str)) else float(value), "holds": bool(holds)}


def _kept_summary(trace) -> tuple[list[int], int, int]:
    res = trace.panoptic
    kept = [int(q) for q in res.kept]
    things = sum(trace.categories.is_thing(int(res.labels[q])) for q in kept)
    return kept, things, len(kept) - things


# ---- the live demonstration: boxes play no part in the masks -------------------------------------------
def _detection(trace, boxes=None, hs=None) -> Detection:
    """The trace's detector outputs as a `Detection` on the model's device (boxes or hs replaced)."""
    dev = next(trace.model.parameters()).device
    T = trace
    on = lambda t: t.to(dev)
    return Detection(features=[on(T[f"backbone.res{k}"]) for k in (2, 3, 4, 5)], mask=on(T["backbone.mask"]),
                     pos=on(T["position"]), src_proj=on(T["input_proj"]), memory=on(T["memory"]),
                     hs=on(T["decoder.hs"] if hs is None else hs),
                     class_logits=on(T["decoder.class_logits"]),
                     boxes=on(T["decoder.boxes"] if boxes is None else boxes))


def _branch(trace, det: Detection, q: int) -> torch.Tensor:
    """The whole panoptic branch for query q from `det`: box attention, then the mask head: (h4, w4)."""
    with torch.no_grad():
        maps = trace.model.attention_maps(det, queries=[q, q])            # (1, 2, M, h, w): q beside a copy
        return trace.model.mask_logits(det, maps)[0, 0].cpu()             # (h4, w4)


def _merge_with(trace, q: int, logits: torch.Tensor, boxes) -> tuple:
    """The panoptic merge with query q's mask logits replaced (and the boxes given, which it ignores):
    (id map bytes, segments)."""
    masks = trace["pred_masks"].clone()                                  # (1, K, h4, w4)
    masks[0, trace.mask_queries.index(q)] = logits
    outputs = {"pred_logits": trace["pred_logits"], "pred_masks": masks, "mask_queries": list(trace.mask_queries)}
    if boxes is not None:
        outputs["pred_boxes"] = boxes                                  # (B, N, 4)
    res = postprocess_panoptic(outputs, trace.pre.processed_size, trace.pre.original_size, trace.threshold,
                               trace.categories)
    return res.id_map.tobytes(), res.segments


@cached(keep=4)
def box_independence(trace, q: int | None = None, shift: float = 0.3) -> dict:
    """Move query q's box (every decoder layer's) and rerun the panoptic branch: the mask logits and
    the merge do not change. As a control, give q another query's box embedding: they do.

    Returns query, other, box_before, box_after (cx, cy, w, h), moved_max_diff, embedding_max_diff,
    merge_unchanged (the merge gives the same map and segments with the moved box's logits)."""
    q = focus_query(trace) if q is None else int(q)
    n = trace.config.num_queries
    other = next((int(o) for o in trace.mask_queries if int(o) != q), (q + 1) % n)
    boxes = trace["decoder.boxes"]                                       # (L, B, N, 4) cx, cy, w, h
    moved = boxes.clone()
    moved[:, :, q, :2] = (moved[:, :, q, :2] + shift) % 1.0              # the box centre elsewhere
    hs = trace["decoder.hs"].clone()                                     # (L, B, N, d)
    hs[:, :, q] = trace["decoder.hs"][:, :, other]
    base = _branch(trace, _detection(trace), q)
    after_move = _branch(trace, _detection(trace, boxes=moved), q)
    swapped = _branch(trace, _detection(trace, hs=hs), q)
    unchanged_map = True
    if q in trace.mask_queries:                                          # the merge, before and after the move
        unchanged_map = _merge_with(trace, q, base, None) == _merge_with(trace, q, after_move, moved[-1])
    return {"query": q, "other": other, "shift": shift,
            "box_before": [float(v) for v in boxes[-1, 0, q]], "box_after": [float(v) for v in moved[-1, 0, q]],
            "moved_max_diff": float((after_move - base).abs().max()),
            "embedding_max_diff": float((swapped - base).abs().max()), "merge_unchanged": unchanged_map}


# ---- the nine answers ----------------------------------------------------------------------------------
def _a1(trace, D):
    s = D.stride
    mem = tuple(trace.shape("memory")[1:])
    answer = (f"From the encoder's output (`memory`): input_proj(Res5), {D.d} x {D.h} x {D.w}, goes through the "
              f"{D.enc_layers} encoder layers as {D.hw} tokens of d = {D.d} numbers and comes out as the "
              f"{mem[0]} x {mem[1]} x {mem[2]} encoded image: d x H/{s} x W/{s} of the {D.H} x {D.W} network input.")
    grid = f"ceil({D.H}/{s}) x ceil({D.W}/{s}) = {D.h} x {D.w}"
    if s == 32:
        rating, verdict = RIGHT, (f"Right, where H x W is the resized input ({D.H} x {D.W}), not the {D.H0} x {D.W0} "
                                  f"photo, and sizes round up: {grid}.")
    else:
        rating, verdict = WRONG, (f"Not for this model: its last backbone stage is dilated, so the grid is "
                                  f"H/{s} x W/{s} of the resized input: {grid}.")
    checks = [_check(f"memory is d x H/{s} x W/{s}", f"{mem[0]} x {mem[1]} x {mem[2]}", mem == (D.d, D.h, D.w))]
    return answer, rating, verdict, checks


def _a2(trace, D):
    q = focus_query(trace)
    total = float(trace["bbox_attention"][0, q].double().sum())
    answer = (f"q_linear turns each box embedding (hs[-1], {D.N} x {D.d}) into a query and k_linear each cell of the "
              f"encoded image into a key; each of the M = {D.M} heads scores them with d/M = {D.dh} channels, and "
              f"ONE softmax over all M x h x w = {D.M * D.hw} scores of a query gives the {D.N} x {D.M} x {D.h} x "
              f"{D.w} maps (N x M x H/{D.stride} x W/{D.stride}). No values, no output projection.")
    verdict = (f"Loose: the maps are attention weights, softmaxed jointly over heads and cells (query {q}'s {D.M} maps "
               f"sum to {total:.4f} together, not {D.M})")
    verdict += "." if D.stride == 32 else f"; and for this model the grid is H/{D.stride} x W/{D.stride}."
    checks = [_check(f"query {q}'s {D.M} maps sum to 1", total, abs(total - 1) < 1e-3),
              _check("maps are N x M x h x w", " x ".join(map(str, trace.shape("bbox_attention")[1:])),
                     tuple(trace.shape("bbox_attention")[1:]) == (D.N, D.M, D.h, D.w))]
    return answer, LOOSE, verdict, checks


def _a3(trace, D):
    q = focus_query(trace)
    st = concat_stack(trace, q)
    c4, c3, c2 = (trace.shape(f"backbone.res{k}")[1] for k in (4, 3, 2))
    a1, a2, a3 = (trace.shape(f"mask_head.adapter{k}")[1] for k in (1, 2, 3))
    answer = (f"The 'Res5' stacked with the maps is input_proj(Res5): {D.d} x {D.h} x {D.w}, the same tensor that "
              f"entered the encoder, repeated for every query; with a query's {D.M} maps that makes {st.channels} "
              f"channels.")
    verdict = (f"Wrong as stated: not the {D.C5}-channel Res5 but input_proj(Res5), {D.d} channels. Res5 reaches the "
               f"mask head only through input_proj; Res4, Res3 and Res2 enter later through 1x1 adapters "
               f"({c4} -> {a1}, {c3} -> {a2}, {c2} -> {a3} channels).")
    checks = [_check(c["claim"], c["max_abs_diff"], c["holds"]) for c in st.checks[:2]]
    checks.append(_check(f"the concat has d + M = {D.d + D.M} channels, not {D.C5} + {D.M}", st.channels,
                         st.channels == D.d + D.M))
    return answer, WRONG, verdict, checks


def _a41(trace, D):
    kept, things, stuff = _kept_summary(trace)
    answer = (f"Yes: the decoder turns N = {D.N} object queries into {D.N} box embeddings (hs[-1], {D.N} x {D.d}); "
              f"two heads read each one, a class among {D.C} + 'no object' and a box. Here {len(kept)} pass the "
              f"class-score threshold {trace.threshold:g}: {things} things and {stuff} stuff, each with a box.")
    verdict = ("Right. Stuff gets boxes too because the detector was trained on every panoptic segment, stuff "
               "included, with box losses; the masks were trained afterwards with the detector frozen (focal + "
               "DICE losses on the matched queries).")
    ok = tuple(trace.shape("pred_boxes")[1:]) == (D.N, 4)
    return answer, RIGHT, verdict, [_check("every query has a box", f"{D.N} x 4", ok)]


def _a42(trace, D):
    demo = box_independence(trace)
    q = demo["query"]
    answer = (f"What goes in is the box embeddings, hs[-1]: {D.N} x {D.d}, d = {D.d} numbers per query, with the "
              f"encoded image ({D.d} x {D.h} x {D.w}). The 4 box coordinates are a side output.")
    verdict = (f"Wrong: the box coordinates are never used by the mask branch or by the merge. Moving query {q}'s box "
               f"centre by {demo['shift']:g} of the image changes its mask logits by {demo['moved_max_diff']:.3g} "
               f"(largest difference); giving it query {demo['other']}'s embedding changes them by "
               f"{demo['embedding_max_diff']:.3g}.")
    checks = [_check(f"moving query {q}'s box changes no mask logit", demo["moved_max_diff"],
                     demo["moved_max_diff"] == 0.0),
              _check("... nor the panoptic map", str(demo["merge_unchanged"]), demo["merge_unchanged"]),
              _check(f"another embedding does change query {q}'s mask", demo["embedding_max_diff"],
                     demo["embedding_max_diff"] > 0.0)]
    return answer, WRONG, verdict, checks


def _a43(trace, D):
    kept, _, _ = _kept_summary(trace)
    answer = (f"For every box embedding, all {D.N} queries whether kept or not, it gives M = {D.M} maps of "
              f"{D.h} x {D.w}: {D.N} x {D.M} x {D.h} x {D.w}, softmaxed jointly over heads and cells.")
    verdict = (f"Loose: the maps belong to the box embeddings, not to boxes, and are made for all {D.N} queries; "
               f"only {len(kept)} of them end up in the merge.")
    n = trace.shape("bbox_attention")[1]
    return answer, LOOSE, verdict, [_check("maps for all N queries", n, n == D.N)]


def _a44(trace, D):
    h4, w4 = trace.shape("pred_masks")[-2:]
    grids = [f"{D.h} x {D.w}"] + [" x ".join(map(str, trace.shape(f"mask_head.adapter{k}")[-2:])) for k in (1, 2, 3)]
    answer = (f"Each query's {D.d + D.M}-channel stack goes through 3x3 conv + GroupNorm + ReLU blocks; three nearest "
              f"upsamplings ({' -> '.join(grids)}) each add Res4, Res3, Res2 through a 1x1 adapter (FPN-style), and a "
              f"last 3x3 conv gives one {h4} x {w4} map of mask logits.")
    verdict = (f"Loose: the maps are stacked with input_proj(Res5) ({D.d} channels), not Res5 ({D.C5}); Res4, Res3 "
               f"and Res2 are added after 1x1 adapters, not concatenated; the 'cleaning' is just these convolutions.")
    if grids[0] == grids[1]:
        verdict += f" With a stride-{D.stride} Res5 the first upsampling keeps the size: Res4 has the same grid."
    ok = tuple(trace.shape("mask_head.out_lay")[1:]) == (1, h4, w4)
    return answer, LOOSE, verdict, [_check("one mask-logit map per query", f"1 x {h4} x {w4}", ok)]


def _a45(trace, D):
    res = trace.panoptic
    kept, _, _ = _kept_summary(trace)
    merges = "; ".join(f"{m['name']}: queries {', '.join(map(str, m['queries']))}" for m in res.stuff_merges) or "none"
    dropped = ", ".join(str(d["query"]) for d in res.dropped) or "none"
    answer = (f"Only the {len(kept)} queries (of {D.N}) whose class score is above {res.threshold:g} compete: each kept "
              f"mask is resized to the {D.H} x {D.W} input and every pixel goes to the highest mask logit. Then stuff of "
              f"one class is merged (here: {merges}), segments of at most {SMALL_AREA} px are dropped (here: {dropped}) "
              f"and the argmax is redone: {len(res.segments)} segments.")
    if not kept:
        answer = (f"Only the queries (of {D.N}) whose class score is above {res.threshold:g} compete, and here none is: "
                  f"the map has no segment. Then stuff of one class would be merged, segments of at most {SMALL_AREA} "
                  f"px dropped and the argmax redone.")
    verdict = ("Loose: not every mask competes, only the kept queries'; then the stuff merge, the small segments "
               "dropped and the argmax redone.")
    owners = set(int(v) for v in set(res.winner_before_merge.ravel().tolist())) - {-1}
    return answer, LOOSE, verdict, [_check("every pixel's first owner is a kept query", len(owners),
                                           owners <= set(kept))]


def _a46(trace, D):
    h4, w4 = trace.shape("pred_masks")[-2:]
    r2 = level_stride(trace, "backbone.res2")
    Ht, Wt = trace.panoptic.id_map.shape
    answer = (f"The mask logits are {h4} x {w4}: 1/{r2} of the {D.H} x {D.W} network input (Res2's stride is {r2}). "
              f"The post-processor resizes them to the input size, takes the argmax, then resizes the map to the "
              f"{D.H0} x {D.W0} photo: the panoptic map is {Ht} x {Wt}, full size.")
    verdict = (f"Wrong: the panoptic map has the photo's full size. Only the mask logits are at 1/{r2}, and of the "
               f"network input, not of the original image.")
    checks = [_check("panoptic map = photo size", f"{Ht} x {Wt}", (Ht, Wt) == (D.H0, D.W0)),
              _check(f"mask logits = 1/{r2} of the input", f"{h4} x {w4}",
                     (h4, w4) == tuple(-(-v // r2) for v in (D.H, D.W)))]
    return answer, WRONG, verdict, checks


_ANSWERS = {"1": _a1, "2": _a2, "3": _a3, "4.1": _a41, "4.2": _a42, "4.3": _a43, "4.4": _a44, "4.5": _a45,
            "4.6": _a46}


@cached(keep=2)
def answers(trace) -> tuple[Answer, ...]:
    """The nine curriculum items, in order, answered for this trace."""
    D = dims(trace)
    out = []
    for item in ITEMS:
        answer, rating, verdict, checks = _ANSWERS[item.key](trace, D)
        st = STEPS[item.step - 1]
        out.append(Answer(item.key, item.quote, item.given, item.step, st.key, st.title, answer, rating, verdict,
                          tuple(checks)))
    return tuple(out)


__all__ = ["ITEMS", "Item", "Answer", "answers", "box_independence", "focus_query", "other_stride",
           "RIGHT", "LOOSE", "WRONG"]
