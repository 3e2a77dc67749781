"""Check yourself: three questions per step, built from the live trace.

`questions(trace)` gives 21 `Question`s (3 for each of the 7 steps). Their right answers are read
from the trace (shapes, sums, argmaxes), so they depend on the image and the model and a class
cannot copy one answer sheet. A question is multiple choice (4 distinct options, wrong ones taken
from real misconceptions: 2048 vs 256 channels, H/32 vs H/16, per-head vs joint softmax, 1/4 vs
full size, box coordinates vs embeddings) or asks for a number. `check(question, answer)` gives
the feedback at once: right or wrong, the explanation, and a pointer to the step page's figure.

Questions are frozen dataclasses of plain values (`to_dict()` is JSON-serialisable), and the
same trace always gives the same questions with the options in the same order.
"""
from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field

import numpy as np

from .cache import cached
from .curriculum import focus_query, other_stride
from .explain import dims
from .explain.step1_backbone import level_stride
from .explain.step4_box_attention import head_shares
from .explain.step5_concat_res5 import other_query
from .explain.step7_merge import nearest_index
from .stages import STEPS

CHOICE, NUMBER = "choice", "number"
LETTERS = "ABCD"


@dataclass(frozen=True)
class Question:
    id: str                     # stable across traces, e.g. "s4.head"
    step: int                   # STEPS number of the page that shows the answer
    text: str
    kind: str                   # CHOICE or NUMBER
    options: tuple              # 4 distinct strings (CHOICE); () for NUMBER
    answer: object              # the right option's text (CHOICE) or the number (NUMBER)
    explanation: str
    figure: str                 # what shows it on the step's page
    tolerance: float = 0.0      # NUMBER: |given - answer| <= tolerance counts as right
    params: dict = field(default_factory=dict)   # the query / pixel / cell the question is about

    @property
    def pointer(self) -> str:
        return f"Step {self.step} · {STEPS[self.step - 1].title}: {self.figure}"

    @property
    def answer_label(self) -> str:
        """'B. 256 x 25 x 34' for a choice, the number for a number question."""
        if self.kind == CHOICE:
            return f"{LETTERS[self.options.index(self.answer)]}. {self.answer}"
        return _fmt(self.answer)

    def to_dict(self) -> dict:
        return {**asdict(self), "options": list(self.options), "pointer": self.pointer}


@dataclass(frozen=True)
class Feedback:
    correct: bool
    explanation: str
    pointer: str
    answer: str                 # the right answer, as `Question.answer_label`


def check(question: Question, answer) -> Feedback:
    """Feedback on `answer`: for a choice, the option's text, its letter ('B') or its index (1);
    for a number, a number or a string of one."""
    correct, note = False, ""
    if question.kind == CHOICE:
        picked = _picked(question, answer)
        if picked is None:
            note = f"{answer!r} is not one of the options. "
        correct = picked == question.answer
    else:
        try:
            value = float(str(answer).strip().replace(",", ""))
            correct = abs(value - float(question.answer)) <= question.tolerance + 1e-9
        except ValueError:
            note = f"{answer!r} is not a number. "
    head = "Right. " if correct else f"Not quite: the answer is {question.answer_label}. "
    return Feedback(correct, note + head + question.explanation, question.pointer, question.answer_label)


def _picked(question: Question, answer):
    if isinstance(answer, int) and not isinstance(answer, bool):
        return question.options[answer] if 0 <= answer < len(question.options) else None
    text = str(answer).strip()
    if len(text) == 1 and text.upper() in LETTERS[:len(question.options)]:
        return question.options[LETTERS.index(text.upper())]
    return text if text in question.options else None


def _fmt(x) -> str:
    if isinstance(x, float) and x.is_integer():
        return str(int(x))
    return str(x)


def _choice(qid, step, text, right, wrongs, explanation, figure, **params) -> Question:
    """A multiple-choice question: the right option and the first 3 distinct wrong ones, in an order
    fixed by the question and its options (so it varies between images, and not between runs)."""
    opts = [right]
    for w in wrongs:
        if w not in opts:
            opts.append(w)
        if len(opts) == 4:
            break
    if len(opts) < 4:
        raise RuntimeError(f"question {qid}: only {len(opts)} distinct options {opts}")
    random.Random(f"{qid}|{'|'.join(opts)}").shuffle(opts)
    return Question(qid, step, text, CHOICE, tuple(opts), right, explanation, figure, params=params)


def _number(qid, step, text, answer, explanation, figure, tolerance=0.0, **params) -> Question:
    return Question(qid, step, text, NUMBER, (), answer, explanation, figure, tolerance, params)


def _hw(shape) -> str:
    return f"{int(shape[-2])} x {int(shape[-1])}"


def _grid(D, s) -> str:
    return f"{-(-D.H // s)} x {-(-D.W // s)}"


def _label(trace, q: int) -> str:
    return f"query {q} ({trace.categories.label(int(trace.panoptic.labels[q]))})"


# ---- the questions, step by step ------------------------------------------------------------------------
def _step1(trace, D, q):
    s, o = D.stride, other_stride(D.stride)
    res5 = trace.shape("backbone.res5")[1:]
    c2 = trace.shape("backbone.res2")[1]
    cfg = trace.config
    r2 = level_stride(trace, "backbone.res2")
    return [
        _choice("s1.input", 1, f"The photo is {D.H0} x {D.W0} pixels (height x width). What size (height x width) "
                "is the network input?", f"{D.H} x {D.W}",
                [f"{D.H0} x {D.W0}", f"{cfg.input_size} x {cfg.max_input_size}", f"{D.W} x {D.H}",
                 f"{_grid(D, 4)}", f"{D.h} x {D.w}", f"{2 * D.H} x {2 * D.W}"],
                f"The photo is resized, keeping its shape (x {D.H / D.H0:.3g}), before the backbone: {D.H0} x {D.W0} "
                f"becomes {D.H} x {D.W}. Every later size is a fraction of {D.H} x {D.W}, not of the photo.",
                "the preprocessed input"),
        _choice("s1.res5", 1, "What is the shape of Res5 (channels x height x width) for this image?",
                f"{res5[0]} x {_hw(res5)}",
                [f"{D.d} x {_hw(res5)}", f"{D.C5} x {_grid(D, o)}", f"{D.C5} x {_grid(D, 4)}", f"{c2} x {_hw(res5)}",
                 f"{D.C5} x {D.H} x {D.W}"],
                f"Res5 has {D.C5} channels at stride {s}: ceil({D.H}/{s}) x ceil({D.W}/{s}) = {_hw(res5)}. "
                f"Its {D.d} channels come later, from input_proj.", "Res2..Res5, shape and stride"),
        _choice("s1.res2", 1, "What is Res2's stride, and so its grid (height x width)?",
                f"stride {r2}: {_grid(D, r2)}",
                [f"stride {k}: {_grid(D, k)}" for k in (s, o, 8, 1, 2)],
                f"Res2 (layer1) has stride {r2}: ceil({D.H}/{r2}) x ceil({D.W}/{r2}) = {_grid(D, r2)}. It is the "
                f"finest feature the mask head uses, which is why the masks come out at 1/{r2}.",
                "Res2..Res5, shape and stride"),
    ]


def _step2(trace, D, q):
    o = other_stride(D.stride)
    cell = (D.h // 2, D.w // 2)
    total = float(trace.encoder_attention_row(0, cell[0] * D.w + cell[1]).double().sum())
    mem = trace.shape("memory")[1:]
    return [
        _choice("s2.memory", 2, "What is the shape of the encoded image (the encoder's output, `memory`)?",
                f"{mem[0]} x {_hw(mem)}",
                [f"{D.C5} x {_hw(mem)}", f"{D.d} x {_grid(D, o)}", f"{D.d} x {_grid(D, 4)}", f"{D.N} x {D.d}",
                 f"{D.d + D.M} x {_hw(mem)}"],
                f"The encoder keeps the {D.d} channels of input_proj(Res5) at every one of the {D.hw} cells of the "
                f"H/{D.stride} x W/{D.stride} grid: {mem[0]} x {_hw(mem)}.", "where the encoded image comes from"),
        _number("s2.tokens", 2, "The encoder treats every grid cell as a token. How many tokens does each "
                "encoder self-attention attend over?", D.hw,
                f"{D.h} x {D.w} = {D.hw} cells (H/{D.stride} x W/{D.stride} of the {D.H} x {D.W} input).",
                "the self-attention of a cell"),
        _number("s2.headsum", 2, f"In encoder layer 1, cell (row {cell[0]}, column {cell[1]}) attends over the grid "
                f"with {D.M} heads. Add up all its attention weights, every head and every cell: what is the total?",
                round(total, 2),
                f"nn.MultiheadAttention normalises each head on its own (one softmax per head), so each head's "
                f"weights sum to 1 and the {D.M} heads to {total:.2f}. (The box attention of step 4 is different: "
                f"one softmax over all heads together.)", "the self-attention of a cell, per head",
                tolerance=0.05, cell=list(cell), layer=0),
    ]


def _step3(trace, D, q):
    probs = trace["decoder.class_probs"][-1, 0]                  # (N, C+1)
    n_real = int((probs.argmax(-1) != D.C).sum())
    kept = len(trace.panoptic.kept)
    order = probs[q].argsort(descending=True).tolist()
    names = [trace.categories.label(int(c)) for c in order[:6]] + ["no object"]
    p = float(probs[q, order[0]])
    return [
        _choice("s3.embeddings", 3, "What exactly goes from the decoder into the box attention (the curriculum's "
                "'d x N box embeddings')?", f"hs[-1]: {D.N} x {D.d}, {D.d} numbers per query",
                [f"the boxes: {D.N} x 4 coordinates (cx, cy, w, h)", f"the class scores: {D.N} x {D.C + 1}",
                 f"only the kept queries' embeddings: {kept} x {D.d}",
                 f"the learned object queries: {D.N} x {D.d}, before the decoder"],
                f"The last decoder layer's output, hs[-1] ({D.N} x {D.d}), for all {D.N} queries. The boxes are a "
                f"side output of it: the mask branch never reads them.", "queries -> box embeddings"),
        _number("s3.real", 3, f"How many of the {D.N} queries have a real class (not 'no object') as their most "
                "likely class?", n_real,
                f"{n_real} queries' argmax is a real class; {kept} of them also pass the threshold "
                f"{trace.threshold:g} and go to the merge.", "all queries with the threshold slider"),
        _choice("s3.class", 3, f"What is query {q}'s most likely class?", names[0], names[1:],
                f"Query {q}: {names[0]} with probability {p:.2f} (softmax over {D.C} classes + no object).",
                "one query across the decoder layers", query=q),
    ]


def _step4(trace, D, q):
    o = other_stride(D.stride)
    shares = head_shares(trace, [q])[0]                           # (M,)
    total = float(shares.sum())
    order = [int(m) for m in (-shares).argsort(kind="stable")]
    head = [f"head {m + 1}" for m in order]
    qs = [
        _choice("s4.maps", 4, f"How many maps does query {q} produce, and of what size?", f"{D.M} maps of {D.h} x {D.w}",
                [f"1 map of {D.h} x {D.w}", f"{D.M} maps of {_grid(D, o)}", f"{D.M} maps of {_grid(D, 4)}",
                 f"1 map of {D.H} x {D.W}"],
                f"One map per head, M = {D.M}, each over the {D.h} x {D.w} grid of the encoded image "
                f"(H/{D.stride} x W/{D.stride}).", "the N x M x h x w maps", query=q),
        _choice("s4.sum", 4, f"What do query {q}'s {D.M} maps add up to, all heads and cells together?",
                _fmt(round(total, 2)), [str(D.M), str(D.hw), str(D.M * D.hw), "0", str(D.N)],
                f"One softmax runs over all {D.M} x {D.hw} scores of a query (heads and cells jointly), so all "
                f"{D.M} maps sum to {total:.4f} together; a softmax per head would give {D.M}.",
                "the formula with live sizes", query=q),
    ]
    share_text = ", ".join(f"head {m + 1}: {100 * shares[m]:.0f} %" for m in order[:4])
    why = f"The share of query {q}'s attention each head carries: {share_text}."
    if D.M >= 4:
        qs.insert(1, _choice("s4.head", 4, f"Which head carries most of query {q}'s attention?", head[0], head[1:],
                             why, "the N x M x h x w maps", query=q))
    else:
        qs.insert(1, _number("s4.head", 4, f"Which head (1 to {D.M}) carries most of query {q}'s attention?",
                             order[0] + 1, why, "the N x M x h x w maps", query=q))
    return qs


def _step5(trace, D, q):
    x = trace.query("mask_head.concat", q)                       # (d+M, h, w)
    ch = int(x.shape[0])
    other = other_query(trace, q)
    c2 = trace.shape("backbone.res2")[1]
    return [
        _choice("s5.channels", 5, f"How many channels does query {q}'s concat (the mask head's input) have?", str(ch),
                [str(D.C5 + D.M), str(D.d), str(D.C5), str(D.d + D.N), str(D.d + 1)],
                f"input_proj(Res5) gives {D.d} channels, the query's maps {D.M}: {D.d} + {D.M} = {ch}. The raw "
                f"Res5 ({D.C5} channels) is not in it.", "the stack, channel by channel", query=q),
        _choice("s5.raw", 5, f"Is the tensor stacked with query {q}'s maps the raw Res5?",
                f"No: input_proj(Res5), {D.d} x {D.h} x {D.w}, the tensor that entered the encoder",
                [f"Yes: Res5 itself, {D.C5} x {D.h} x {D.w}",
                 f"No: the encoded image (the encoder's output), {D.d} x {D.h} x {D.w}",
                 f"No: Res2, {c2} x {_grid(D, 4)}"],
                f"Channels 0-{D.d - 1} of the concat equal input_proj(Res5) exactly, the {D.d}-channel projection "
                f"of the {D.C5}-channel Res5 that also entered the encoder; they differ from the encoder's output.",
                "live checks of the stack", query=q),
        _choice("s5.same", 5, f"Compare query {q}'s concat with query {other}'s. Which channels are identical?",
                f"channels 0-{D.d - 1}", [f"channels {D.d}-{ch - 1}", f"all {ch} channels", "none"],
                f"Channels 0-{D.d - 1} are input_proj(Res5), the same for every query; channels {D.d}-{ch - 1} are "
                f"each query's own {D.M} attention maps.", "live checks of the stack", query=q, other=other),
    ]


def _step6(trace, D, q):
    h4, w4 = trace.shape("pred_masks")[-2:]
    r2 = level_stride(trace, "backbone.res2")
    fpn3 = trace.shape("mask_head.fpn3")[1]
    c2 = trace.shape("backbone.res2")[1]
    before, after = _hw(trace.shape("mask_head.relu2")), _hw(trace.shape("mask_head.fpn1"))
    grid = f"{D.h} x {D.w}"
    return [
        _choice("s6.size", 6, f"At what size (height x width) does the mask head give query {q}'s mask logits?",
                f"{h4} x {w4}",
                [f"{D.H} x {D.W}", f"{D.H0} x {D.W0}", grid, f"{-(-D.H0 // 4)} x {-(-D.W0 // 4)}",
                 f"{2 * h4} x {2 * w4}"],
                f"1/{r2} of the {D.H} x {D.W} network input, the grid of Res2 (stride {r2}), the last feature "
                f"added: {h4} x {w4}. The merge enlarges it later.", "the mask sharpening", query=q),
        _choice("s6.fpn3", 6, "How many channels does the last FPN sum (the upsampled path + adapted Res2) have?",
                str(fpn3), [str(c2), str(c2 + fpn3), str(fpn3 // 2), str(D.d), str(D.d + D.M)],
                f"A 1x1 adapter turns Res2's {c2} channels into {fpn3}, which are added (not stacked) to the "
                f"upsampled path's {fpn3}.", "each FPN stage: upsampled path + adapted skip = sum"),
        _choice("s6.up1", 6, "The first upsampling brings the path to Res4's grid. From what size to what size?",
                f"{before} -> {after}",
                [f"{grid} -> {2 * D.h} x {2 * D.w}", f"{grid} -> {grid}", f"{grid} -> {h4} x {w4}",
                 f"{grid} -> {D.H} x {D.W}", f"{grid} -> {4 * D.h} x {4 * D.w}"],
                f"Res5 has stride {D.stride} and Res4 stride {level_stride(trace, 'backbone.res4')}: {before} -> "
                f"{after}" + (" (no change: nothing to upsample)." if before == after else "."),
                "each FPN stage: upsampled path + adapted skip = sum"),
    ]


def _first_owner(trace) -> np.ndarray:
    """(H_t, W_t) the first argmax's winner (before the stuff merge) at every photo pixel, mapped as
    the merge maps its id map to the photo (PIL nearest)."""
    res = trace.panoptic
    (h, w), (Ht, Wt) = res.winner_before_merge.shape, res.id_map.shape
    return res.winner_before_merge[nearest_index(h, Ht)][:, nearest_index(w, Wt)]


def _pixel(trace, q: int, first: np.ndarray):
    """A photo pixel (x, y): the middle one (row-major) of those whose final owner is not the first
    argmax's winner (the stuff merge or a drop changed it), else the middle pixel of query q's
    final segment, else the photo's centre."""
    qmap = trace.panoptic.query_map                                 # (H_t, W_t)
    for where in (first != qmap, qmap == q):
        ys, xs = where.nonzero()
        if len(ys):
            i = len(ys) // 2
            return int(xs[i]), int(ys[i])
    return qmap.shape[1] // 2, qmap.shape[0] // 2


def _step7(trace, D, q):
    res = trace.panoptic
    kept = [int(k) for k in res.kept]
    Ht, Wt = res.id_map.shape
    first_map = _first_owner(trace)
    x, y = _pixel(trace, q, first_map)
    owner, first = int(res.query_map[y, x]), int(first_map[y, x])
    nobody = "no query: none passes the threshold"
    if owner >= 0:
        right = _label(trace, owner)
        why = f"The first argmax over the {len(kept)} kept masks gives photo pixel ({x}, {y}) to {_label(trace, first)}"
        if first != owner:
            gone = ", ".join(str(d["query"]) for d in res.dropped)
            why += (f"; after the stuff merge and the small-segment loop (dropped: {gone or 'none'}) the argmax is "
                    f"redone without them, and {right} wins")
        why += f". Final: segment {int(res.id_map[y, x])}, {right}."
    else:
        right = nobody
        why = f"No query's class score is above {res.threshold:g}, so the map has no segment at all."
    by_score = [int(k) for k in (-res.scores).argsort(kind="stable")]
    wrongs = [_label(trace, k) for k in [first] + kept + by_score if k >= 0 and k != owner] + [nobody]
    return [
        _number("s7.compete", 7, f"How many of the {D.N} queries compete in the merge's pixel-wise argmax?", len(kept),
                f"Only the queries whose most likely class is real with a score above {res.threshold:g}: {len(kept)}.",
                "every query: kept or not, and why"),
        _choice("s7.size", 7, "What size (height x width) is the final panoptic map?", f"{Ht} x {Wt}",
                [f"{-(-D.H0 // 4)} x {-(-D.W0 // 4)}", _hw(trace.shape("pred_masks")), f"{D.H} x {D.W}",
                 f"{D.h} x {D.w}", f"{Ht // 2} x {Wt // 2}"],
                f"The photo's full size. The mask logits ({_hw(trace.shape('pred_masks'))}, 1/4 of the input) are "
                f"resized to the {D.H} x {D.W} input for the argmax, and the map to the {Ht} x {Wt} photo.",
                "the panoptic map"),
        _choice("s7.pixel", 7, f"At photo pixel (x={x}, y={y}), which query owns the pixel in the final map?", right,
                wrongs, why, "click a pixel: every kept query's mask score there", pixel=[x, y]),
    ]


_STEPS = (_step1, _step2, _step3, _step4, _step5, _step6, _step7)


@cached(keep=2)
def questions(trace) -> tuple[Question, ...]:
    """The 21 questions of this trace, 3 per step, in step order."""
    D = dims(trace)
    q = focus_query(trace)
    return tuple(question for make in _STEPS for question in make(trace, D, q))


def questions_for_step(trace, step: int) -> tuple[Question, ...]:
    return tuple(x for x in questions(trace) if x.step == step)


__all__ = ["Question", "Feedback", "questions", "questions_for_step", "check", "CHOICE", "NUMBER"]
