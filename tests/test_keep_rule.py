"""The keep rule ("argmax is not no-object, and score > threshold, strictly") is written once
(detr_viz.postprocess) and the tracer, the merge and the Merge page's table agree with it, on
random logits with confident no-object queries and a score exactly at the threshold."""
import pytest
import torch
from PIL import Image

import detr_viz
from detr_viz.explain import step7_merge as merge_page
from detr_viz.postprocess import real_class_ranking
from detr_viz.testing import AT_HALF, CONFIDENT, NO_OBJECT, TINY, UNSURE, tiny_model

N, C1 = TINY.num_queries, TINY.num_classes + 1


def random_logits(seed: int) -> torch.Tensor:
    """(L, 1, N, C+1): noise, 3 queries pushed to real classes, 3 to no-object with confidence."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(TINY.dec_layers, 1, N, C1, generator=g) * 2.0
    q = torch.randperm(N, generator=g).tolist()
    for i, label in zip(q[:3], (1, 184, 18)):
        logits[..., i, label] += 10.0 + 4.0 * torch.rand((), generator=g)
    for i in q[3:6]:
        logits[..., i, -1] += 14.0
    return logits


def expected_kept(logits: torch.Tensor, threshold: float) -> set[int]:
    """The rule, computed here on its own: argmax over C+1 not the last, and max probability > threshold."""
    probs = logits[-1, 0].softmax(-1)                              # (N, C+1)
    return {q for q in range(N) if int(probs[q].argmax()) != C1 - 1 and float(probs[q].max()) > threshold}


def model_with_logits(logits: torch.Tensor):
    model = tiny_model(seed=3)
    model.detr.class_embed.register_forward_hook(lambda m, a, out: logits.clone())
    return model


@pytest.mark.parametrize("seed", range(3))
def test_tracer_merge_and_table_keep_the_same_queries(seed):
    logits = random_logits(seed)
    probs = logits[-1, 0].softmax(-1)                              # (N, C+1)
    real = [q for q in range(N) if int(probs[q].argmax()) != C1 - 1]
    ranked = sorted(real, key=lambda q: -float(probs[q].max()))
    at = ranked[1]                                                 # the threshold sits exactly on this query
    threshold = float(probs[at].max())
    assert any(float(probs[q].max()) > threshold for q in range(N) if q not in real), \
        "a no-object query scores above the threshold"
    t = detr_viz.trace(model_with_logits(logits), Image.new("RGB", (64, 64), (90, 30, 60)), size=64,
                       threshold=threshold)
    want = expected_kept(logits, threshold)
    assert at not in want and want == {ranked[0]}
    table = {r["query"] for r in merge_page.filter_rows(t.panoptic, t.categories) if r["kept"]}
    assert set(t.mask_queries) == want                             # the tracer ran the mask head for these
    assert set(t.panoptic.kept.tolist()) == want                   # the merge
    assert table == want                                           # the Merge page's table
    low = t.merge(float(probs[ranked[-1]].max()) - 1e-3)           # every real-class query, no no-object one
    assert set(low.kept.tolist()) == set(real) == {r["query"] for r in merge_page.filter_rows(low, t.categories)
                                                       if r["kept"]}


def test_test_model_has_confident_no_object_and_a_score_exactly_at_one_half(tiny_confident):
    t = detr_viz.trace(tiny_confident, Image.new("RGB", (96, 64), (30, 160, 90)), size=64, threshold=0.5)
    probs = t["decoder.class_probs"][-1, 0]                        # (N, C+1)
    for q in NO_OBJECT:
        assert int(probs[q].argmax()) == C1 - 1 and float(probs[q, -1]) > 0.99
    (q_half, (label, _)), = AT_HALF.items()
    assert float(probs[q_half].max()) == 0.5 and int(probs[q_half].argmax()) == label
    # strict '>': the query exactly at 0.5 is not kept; the no-object ones never are
    assert set(t.mask_queries) == set(t.panoptic.kept.tolist()) == set(CONFIDENT) | set(UNSURE)
    assert q_half in set(t.merge(0.4999).kept.tolist())


def test_one_ranking_of_real_class_queries():
    probs = torch.tensor([[0.1, 0.2, 0.7], [0.5, 0.1, 0.4], [0.3, 0.3, 0.4], [0.05, 0.5, 0.45]])
    # no-object (last column) is left out: query 0 ranks by 0.2, not by its 0.7; ties in query order
    assert real_class_ranking(probs) == [1, 3, 2, 0]
