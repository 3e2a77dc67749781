"""The curriculum answered (detr_viz.curriculum): the items in the curriculum's order, each tied to a
step of STEPS, with live numbers and strides true for R50-sized, DC5-sized and toyworld models, and the
live demonstration that a query's box plays no part in its mask."""
import json

import pytest
import torch
from curriculum_traces import MODELS, get, stride

from detr_viz import curriculum
from detr_viz.stages import STEPS


def _dims(shape):
    return " x ".join(str(int(s)) for s in shape)


def by_key(t):
    return {a.key: a for a in curriculum.answers(t)}


def test_items_quote_the_curriculum_in_order_with_their_steps():
    t = get("toyworld")
    ans = curriculum.answers(t)
    assert [a.key for a in ans] == ["1", "2", "3", "4.1", "4.2", "4.3", "4.4", "4.5", "4.6"]
    expected_steps = {"1": 2, "2": 4, "3": 5, "4.1": 3, "4.2": 4, "4.3": 4, "4.4": 6, "4.5": 7, "4.6": 7}
    for a in ans:
        st = STEPS[a.step - 1]
        assert a.step == expected_steps[a.key] and (a.step_key, a.step_title) == (st.key, st.title)
        assert a.answer and a.rating in (curriculum.RIGHT, curriculum.LOOSE, curriculum.WRONG)
    assert "dxH/32xW/32" in ans[0].quote and "1/4 of the" in ans[-1].quote
    json.dumps([a.to_dict() for a in ans])


@pytest.mark.parametrize("name", MODELS)
def test_answers_state_this_models_stride(name):
    t = get(name)
    s = stride(t)
    a = by_key(t)
    assert f"H/{s}" in a["1"].answer and f"H/{s}" in a["2"].answer
    assert a["1"].rating == (curriculum.RIGHT if s == 32 else curriculum.WRONG)
    if s == 16:
        for x in a.values():
            assert "/32" not in x.answer + x.verdict, (x.key, x.answer, x.verdict)
        assert "H/16" in a["1"].verdict
    else:
        assert "/16" not in a["1"].answer + a["1"].verdict + a["2"].answer + a["2"].verdict


@pytest.mark.parametrize("name", MODELS)
def test_answers_carry_the_live_numbers(name):
    t = get(name)
    a = by_key(t)
    mem = _dims(t["memory"].shape[1:])
    d, c5 = t["input_proj"].shape[1], t["backbone.res5"].shape[1]
    assert mem in a["1"].answer
    assert f"{c5}-channel Res5" in a["3"].verdict and f"input_proj(Res5), {d} channels" in a["3"].verdict
    h4, w4 = t["pred_masks"].shape[-2:]
    W0, H0 = t.image.size
    H, W = t["input"].shape[-2:]
    assert f"{h4} x {w4}" in a["4.6"].answer and f"{H} x {W} network input" in a["4.6"].answer
    assert f"panoptic map is {H0} x {W0}, full size" in a["4.6"].answer
    p = t["pred_logits"][0].softmax(-1)
    score, label = p.max(-1)
    kept = int(((label != p.shape[-1] - 1) & (score > t.threshold)).sum())
    assert (f"Only the {kept} queries" in a["4.5"].answer) if kept else ("none is" in a["4.5"].answer)
    assert f"{t['decoder.hs'].shape[-2]} x {d}" in a["4.2"].answer


@pytest.mark.parametrize("name", MODELS)
def test_every_live_check_holds(name):
    for a in curriculum.answers(get(name)):
        assert a.checks
        for c in a.checks:
            assert c["holds"], (name, a.key, c)


@pytest.mark.parametrize("name", ("r50", "toyworld"))
def test_moving_a_box_changes_no_mask_but_another_embedding_does(name):
    t = get(name)
    demo = curriculum.box_independence(t)
    q = demo["query"]
    assert demo["box_after"][:2] != pytest.approx(demo["box_before"][:2], abs=0.05)   # the box did move
    assert demo["box_after"][2:] == demo["box_before"][2:]
    assert demo["moved_max_diff"] == 0.0 and demo["merge_unchanged"]
    # the control changes it (a random model's attention maps are nearly uniform: a small change)
    assert demo["embedding_max_diff"] > (1e-3 if name == "toyworld" else 0.0)
    # the demonstration's unmoved run is the traced mask of that query
    assert q in t.mask_queries
    base = t["pred_masks"][0, t.mask_queries.index(q)]
    moved = curriculum._branch(t, curriculum._detection(t, boxes=torch.rand_like(t["decoder.boxes"])), q)
    assert torch.allclose(moved, base, atol=1e-4)
