"""Check-yourself questions (detr_viz.quiz) and the worksheet command, for R50-sized and DC5-sized
random models and the shipped toyworld model: every right answer is read again here from the trace's
tensors and shapes, independently of the quiz's own code."""
import json
import re

import numpy as np
import pytest
import torch
from curriculum_traces import MODELS, TOY_SCENE, get, stride

from detr_viz import quiz
from detr_viz.stages import STEPS


def _hw(shape):
    return f"{int(shape[-2])} x {int(shape[-1])}"


def _dims(shape):
    return " x ".join(str(int(s)) for s in shape)


def _probs(t):
    return t["pred_logits"][0].softmax(-1)                                   # (N, C+1)


def expected(t, x):
    """The right answer of question x, read from the trace (not through detr_viz.quiz)."""
    q = x.params.get("query")
    H, W = t["input"].shape[-2:]
    if x.id == "s1.input":
        return _hw((H, W))
    if x.id == "s1.res5":
        return _dims(t["backbone.res5"].shape[1:])
    if x.id == "s1.res2":
        r2 = t["backbone.res2"].shape
        return f"stride {2 ** round(np.log2(H / r2[-2]))}: {_hw(r2)}"
    if x.id == "s2.memory":
        return _dims(t["memory"].shape[1:])
    if x.id == "s2.tokens":
        return t["memory"].shape[-2] * t["memory"].shape[-1]
    if x.id == "s2.headsum":
        r, c = x.params["cell"]
        attn = t["encoder.layer0.self_attn"][0]                              # (M, hw, hw)
        return float(attn[:, r * t["memory"].shape[-1] + c].sum())
    if x.id == "s3.embeddings":
        N, d = t["decoder.hs"].shape[-2:]
        return f"hs[-1]: {N} x {d}, {d} numbers per query"
    if x.id == "s3.real":
        p = _probs(t)
        return int((p.argmax(-1) != p.shape[-1] - 1).sum())
    if x.id == "s3.class":
        return t.categories.label(int(_probs(t)[q].argmax()))
    if x.id == "s4.maps":
        _, _, M, h, w = t["bbox_attention"].shape
        return f"{M} maps of {h} x {w}"
    if x.id == "s4.head":
        return f"head {int(t['bbox_attention'][0, q].sum((1, 2)).argmax()) + 1}"
    if x.id == "s4.sum":
        return float(t["bbox_attention"][0, q].double().sum())
    if x.id == "s5.channels":
        return str(t.query("mask_head.concat", q).shape[0])
    if x.id == "s5.raw":
        d = t["input_proj"].shape[1]
        assert torch.equal(t.query("mask_head.concat", q)[:d], t["input_proj"][0])
        return f"No: input_proj(Res5), {_dims(t['input_proj'].shape[1:])}, the tensor that entered the encoder"
    if x.id == "s5.same":
        a, b = t.query("mask_head.concat", q), t.query("mask_head.concat", x.params["other"])
        same = torch.nonzero((a == b).flatten(1).all(1)).flatten().tolist()   # channels equal in both
        assert same == list(range(same[0], same[-1] + 1))
        return f"channels {same[0]}-{same[-1]}"
    if x.id == "s6.size":
        return _hw(t.mask_logits([q]).shape)
    if x.id == "s6.fpn3":
        return str(t["mask_head.fpn3"].shape[1])
    if x.id == "s6.up1":
        return f"{_hw(t['mask_head.relu2'].shape)} -> {_hw(t['mask_head.adapter1'].shape)}"
    if x.id == "s7.compete":
        p = _probs(t)
        score, label = p.max(-1)
        return int(((label != p.shape[-1] - 1) & (score > t.threshold)).sum())
    if x.id == "s7.size":
        W0, H0 = t.image.size
        assert t.panoptic.id_map.shape == (H0, W0)
        return _hw((H0, W0))
    if x.id == "s7.pixel":
        px, py = x.params["pixel"]
        if not t.panoptic.segments:
            return "no query: none passes the threshold"
        owner = t.panoptic.segments[int(t.panoptic.id_map[py, px])]["query"]
        return f"query {owner} ({t.categories.label(int(_probs(t)[owner].argmax()))})"
    raise AssertionError(f"no independent reading for question {x.id}")


@pytest.mark.parametrize("name", MODELS)
def test_every_right_answer_is_the_value_read_from_the_trace(name):
    t = get(name)
    qs = quiz.questions(t)
    assert len(qs) == 21
    for x in qs:
        want = expected(t, x)
        if isinstance(want, float):
            assert abs(float(x.answer) - want) <= 0.01, (x.id, x.answer, want)
        else:
            assert x.answer == want, (x.id, x.answer, want)


@pytest.mark.parametrize("name", MODELS)
def test_three_questions_per_step_with_four_distinct_options(name):
    qs = quiz.questions(get(name))
    assert [x.step for x in qs] == [s.number for s in STEPS for _ in range(3)]
    assert len({x.id for x in qs}) == len(qs)
    for x in qs:
        if x.kind == quiz.CHOICE:
            assert len(x.options) == 4 and len(set(x.options)) == 4, (x.id, x.options)
            assert x.answer in x.options
        else:
            assert x.kind == quiz.NUMBER and x.options == ()
        assert x.explanation and x.pointer.startswith(f"Step {x.step} · {STEPS[x.step - 1].title}")


def test_questions_are_json_data_and_deterministic():
    t = get("toyworld")
    first = [x.to_dict() for x in quiz.questions.uncached(t)]
    again = [x.to_dict() for x in quiz.questions.uncached(t)]
    assert first == again
    back = json.loads(json.dumps(first))
    assert [d["id"] for d in back] == [x.id for x in quiz.questions(t)]
    assert all(d["pointer"] for d in back)


@pytest.mark.parametrize("name", MODELS)
def test_misconceptions_are_among_the_wrong_options(name):
    t = get(name)
    by_id = {x.id: x for x in quiz.questions(t)}
    d, c5 = t["input_proj"].shape[1], t["backbone.res5"].shape[1]
    M = t["bbox_attention"].shape[2]
    N = t["decoder.hs"].shape[-2]
    s = stride(t)
    o = 16 if s == 32 else 32
    H, W = t["input"].shape[-2:]
    h_o, w_o = -(-H // o), -(-W // o)
    assert str(c5 + M) in by_id["s5.channels"].options                      # 2048 vs 256
    assert f"{d} x {h_o} x {w_o}" in by_id["s2.memory"].options              # H/32 vs H/16
    assert str(M) in by_id["s4.sum"].options                                 # per-head vs joint softmax
    assert _hw((H, W)) in by_id["s6.size"].options                           # 1/4 vs full size
    assert f"the boxes: {N} x 4 coordinates (cx, cy, w, h)" in by_id["s3.embeddings"].options


@pytest.mark.parametrize("name", ("dc5", "toyworld"))
def test_no_stride_32_claim_for_a_stride_16_model(name):
    t = get(name)
    assert stride(t) == 16
    for x in quiz.questions(t):
        for text in (x.text, x.explanation, str(x.answer)):
            assert "/32" not in text and "stride 32" not in text, (x.id, text)
    assert "H/16" in next(x for x in quiz.questions(t) if x.id == "s2.memory").explanation


def test_stride_32_model_says_32():
    t = get("r50")
    assert stride(t) == 32
    x = next(x for x in quiz.questions(t) if x.id == "s2.memory")
    assert "H/32" in x.explanation and "/16" not in x.explanation


def test_check_gives_feedback_for_right_and_wrong_answers():
    for x in quiz.questions(get("r50")):
        right = quiz.check(x, x.answer)
        assert right.correct and right.pointer == x.pointer and x.explanation in right.explanation
        if x.kind == quiz.CHOICE:
            i = x.options.index(x.answer)
            assert quiz.check(x, "ABCD"[i]).correct and quiz.check(x, i).correct
            for wrong in (o for o in x.options if o != x.answer):
                fb = quiz.check(x, wrong)
                assert not fb.correct and x.answer in fb.explanation
            assert not quiz.check(x, "E").correct
        else:
            assert quiz.check(x, str(x.answer)).correct
            assert not quiz.check(x, float(x.answer) + 1).correct
            fb = quiz.check(x, "eight")
            assert not fb.correct and "not a number" in fb.explanation


def _key_rows(text):
    """{question id: answer} from the answer key's table."""
    rows = {}
    for line in text.splitlines():
        m = re.match(r"^\| (\d\.\d) \| (s\d\.\w+) \| (.*?) \| ", line)
        if m:
            rows[m.group(2)] = m.group(3).replace("\\|", "|")
    return rows


def test_quiz_command_writes_worksheet_and_matching_answer_key(tmp_path, capsys):
    from detr_viz.__main__ import main
    out = tmp_path / "worksheet"
    assert main(["quiz", str(TOY_SCENE), "--model", "toyworld", "--out", str(out), "--device", "cpu"]) == 0
    sheet = (out / "worksheet.md").read_text()
    key = (out / "answer_key.md").read_text()
    qs = quiz.questions(get("toyworld"))
    rows = _key_rows(key)
    assert rows == {x.id: x.answer_label for x in qs}                      # the key agrees with the app's quiz
    for x in qs:
        assert x.text in sheet
        assert x.explanation not in sheet                                   # no answers on the worksheet
        for opt in x.options:
            assert opt in sheet
    assert "The curriculum, answered" in key and "H/16" in key
    data = json.loads((out / "questions.json").read_text())
    assert [d["answer"] for d in data] == [x.answer for x in qs]
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    assert main(["quiz", str(TOY_SCENE), "--model", "toyworld", "--out", str(blocker / "w")]) == 2
    assert "cannot write the worksheet" in capsys.readouterr().err
    bad = tmp_path / "notes.jpg"
    bad.write_text("this is not a picture")
    assert main(["quiz", str(bad), "--model", "toyworld", "--out", str(tmp_path / "w2")]) == 2
    assert "error:" in capsys.readouterr().err
