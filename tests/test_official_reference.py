"""Our model and merge against outputs recorded from the official facebookresearch/detr code on the
same (non-trivial, seeded) weights: tests/data/official_outputs.pt, made by
scripts/make_official_fixture.py. Covers R50 and R50-DC5 on a real photo."""
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


@pytest.mark.parametrize("name,backbone,dilation", [("r50", "resnet50", False), ("r50-dc5", "resnet50", True)])
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


@pytest.mark.parametrize("name", ["r50", "r50-dc5"])
@pytest.mark.parametrize("case", range(6))
def test_merge_matches_the_official_post_processor(name, case):
    """Outputs made confident by hand (12 queries, duplicate stuff), three target sizes."""
    ref = FIXTURE[name]["merge_cases"][case]
    res = postprocess_panoptic(ref, ref["processed_size"], ref["target_size"], threshold=0.85, categories=COCO)
    np.testing.assert_array_equal(res.id_map, ref["id_map"].numpy().astype(np.int32))
    assert [(s["id"], s["category_id"], s["isthing"], s["area"]) for s in res.segments] == ref["segments"]
    assert len(ref["segments"]) >= 3
