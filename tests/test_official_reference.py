"""Our model and merge against outputs recorded from the official facebookresearch/detr code on the
same (non-trivial, seeded) weights: tests/data/official_outputs.pt, made by
scripts/make_official_fixture.py. Covers R50, R50-DC5 and R101 on a real photo, at input sizes whose
mask head upsamples by exactly 2x (R50), by 1x then 2x (DC5) and by odd factors (R50, R101)."""
import math

import numpy as np
import pytest
import torch
from conftest import DATA
from official_reference import reference_model

from detr_viz.categories import coco_categories
from detr_viz.config import DETRConfig
from detr_viz.postprocess import postprocess_panoptic

COCO = coco_categories()       # the official hub's is_thing_map: index <= 90
FIXTURE = torch.load(DATA / "official_outputs.pt", weights_only=True)


CASES = [("r50", "resnet50", False), ("r50-dc5", "resnet50", True), ("r50-odd", "resnet50", False),
         ("r101", "resnet101", False)]


@pytest.mark.parametrize("name,backbone,dilation", CASES)
def test_outputs_and_merge_match_the_official_code(name, backbone, dilation):
    ref = FIXTURE[name]
    model = reference_model(DETRConfig(backbone=backbone, dilation=dilation))
    with torch.no_grad():
        out = model(ref["input"])
    for key in ("pred_logits", "pred_boxes", "pred_masks"):
        assert out[key].shape == ref[key].shape
        torch.testing.assert_close(out[key], ref[key], atol=1e-4, rtol=1e-4, msg=key)
    # The merge on the official outputs gives the official map and segments exactly.
    h, w = ref["input"].shape[-2:]
    res = postprocess_panoptic({k: ref[k] for k in ("pred_logits", "pred_masks")}, (h, w),
                               tuple(ref["target_size"]), threshold=ref["threshold"], categories=COCO)
    np.testing.assert_array_equal(res.id_map, ref["id_map"].numpy().astype(np.int32))
    assert [(s["id"], s["category_id"], s["isthing"], s["area"]) for s in res.segments] == ref["segments"]
    # a map worth comparing: several segments, things and stuff, and a stuff merge on the way
    assert len(res.segments) >= 4 and {s["isthing"] for s in res.segments} == {True, False}
    assert res.stuff_merges


def grids(h: int, stride: int) -> list[int]:
    """Heights of the res5, res4, res3 and res2 grids for an input of height h (each conv rounds up)."""
    return [math.ceil(h / s) for s in (stride, 16, 8, 4)]


@pytest.mark.parametrize("name,kind", [("r50", "2x"), ("r50-dc5", "1x"), ("r50-odd", "odd"), ("r101", "odd")])
def test_fixture_inputs_cover_exact_and_odd_upsampling(name, kind):
    """The mask head's three upsamplings, from each grid to the next (height and width)."""
    h, w = FIXTURE[name]["input"].shape[-2:]
    stride = 16 if name == "r50-dc5" else 32
    steps = {b / a for size in (h, w) for a, b in zip(grids(size, stride), grids(size, stride)[1:])}
    odd = {f for f in steps if f not in (1, 2)}
    assert {"2x": steps == {2}, "1x": 1 in steps, "odd": bool(odd)}[kind], steps


@pytest.mark.parametrize("name", ["r50", "r50-dc5"])
@pytest.mark.parametrize("case", range(6))
def test_merge_matches_the_official_post_processor(name, case):
    """Outputs made confident by hand (12 queries, duplicate stuff), three target sizes."""
    ref = FIXTURE[name]["merge_cases"][case]
    res = postprocess_panoptic(ref, ref["processed_size"], ref["target_size"], threshold=0.85, categories=COCO)
    np.testing.assert_array_equal(res.id_map, ref["id_map"].numpy().astype(np.int32))
    assert [(s["id"], s["category_id"], s["isthing"], s["area"]) for s in res.segments] == ref["segments"]
    assert len(ref["segments"]) >= 3
