"""The merge on hand-made logits: threshold edge, nothing kept, duplicate stuff, tiny segments,
target size different from the processed size, intermediate results."""
import numpy as np
import pytest
import torch

from detr_viz import postprocess
from detr_viz.categories import coco_categories
from detr_viz.postprocess import id2rgb, rgb2id

C = 251         # 250 classes + no-object
COCO = coco_categories()


def postprocess_panoptic(*args, categories=COCO, **kwargs):
    """The merge with the COCO table (the merge takes no default table)."""
    return postprocess.postprocess_panoptic(*args, categories=categories, **kwargs)
PERSON, DOG, TREE, SKY = 1, 18, 184, 187


def outputs(labels, masks, conf=10.0):
    """labels: class per query (250 = no-object); masks: (N, h, w) logits."""
    n = len(labels)
    logits = torch.zeros(1, n, C)
    for q, lab in enumerate(labels):
        logits[0, q, lab] = conf
    return {"pred_logits": logits, "pred_masks": torch.as_tensor(masks, dtype=torch.float32)[None]}


def regions(h, w, boxes, low=-10.0, high=10.0):
    """One mask per box (y0, y1, x0, x1): high inside, low outside."""
    m = np.full((len(boxes), h, w), low, np.float32)
    for i, (y0, y1, x0, x1) in enumerate(boxes):
        m[i, y0:y1, x0:x1] = high
    return m


def test_quadrants_give_four_segments_with_areas():
    m = regions(8, 8, [(0, 4, 0, 4), (0, 4, 4, 8), (4, 8, 0, 8)])
    r = postprocess_panoptic(outputs([PERSON, DOG, SKY], m), (32, 32))
    assert [(s["category_id"], s["area"], s["isthing"], s["query"]) for s in r.segments] == [
        (PERSON, 256, True, 0), (DOG, 256, True, 1), (SKY, 512, False, 2)]
    assert r.id_map.shape == (32, 32) and r.id_map.dtype == np.int32
    assert r.segments[2]["name"] == "sky-other-merged"
    assert np.bincount(r.id_map.ravel()).tolist() == [256, 256, 512]


def test_threshold_is_strict_and_no_object_never_kept():
    probs_logit = np.log(0.85 / 0.15 * 250)          # a logit giving a max prob of about 0.85
    lg = torch.zeros(1, 3, C)
    lg[0, 0, PERSON] = float(probs_logit)
    lg[0, 1, 250] = 20.0                             # confident no-object
    lg[0, 2, DOG] = 20.0
    score = lg[0, 0].softmax(-1).max().item()
    masks = torch.randn(1, 3, 4, 4)
    kept_at = lambda th: postprocess_panoptic({"pred_logits": lg, "pred_masks": masks}, (16, 16), threshold=th).kept.tolist()
    assert kept_at(score) == [2]                     # equal to the threshold: not kept (strict >)
    assert kept_at(np.nextafter(score, 0, dtype=np.float32)) == [0, 2]
    assert 1 not in kept_at(0.0)


def test_nothing_kept_gives_empty_segments_and_zero_map():
    r = postprocess_panoptic(outputs([250, 250], np.zeros((2, 4, 4))), (16, 20), (7, 9))
    assert r.segments == [] and r.kept.size == 0
    assert r.id_map.shape == (7, 9) and not r.id_map.any()
    assert (r.winner_before_merge == -1).all() and (r.query_map == -1).all()


def test_duplicate_stuff_keeps_the_first_query_and_reargmaxes():
    # Query 1 and 3 are both sky; 3's region must be re-assigned by argmax without 3.
    m = regions(8, 8, [(0, 4, 0, 4), (0, 4, 4, 8), (4, 8, 0, 4), (4, 8, 4, 8)], low=-10)
    m[1, 4:8, 4:8] = 0.0                              # sky query 1 is third best in query 3's area,
    m[2, 4:8, 4:8] = 5.0                              # tree query 2 second best
    m[3, 4:8, 4:8] = 20.0
    r = postprocess_panoptic(outputs([PERSON, SKY, TREE, SKY], m), (8, 8))
    assert [s["query"] for s in r.segments] == [0, 1, 2]
    assert r.stuff_merges == [{"category_id": SKY, "name": "sky-other-merged", "queries": [1, 3]}]
    assert [(d["query"], d["area"], d["round"]) for d in r.dropped] == [(3, 0, 1)]
    assert "stuff merge" in r.dropped[0]["reason"]
    # Before the merge query 3 owned the bottom-right; after, query 1 did; finally the argmax
    # without query 3 gives it to tree (query 2, logit 10 > sky's 0): the official quirk.
    assert (r.winner_before_merge[4:, 4:] == 3).all()
    assert (r.winner_after_merge[4:, 4:] == 1).all()
    assert (r.winner_final[4:, 4:] == 2).all()
    assert [s["area"] for s in r.segments] == [16, 16, 32]


def test_small_segments_dropped_repeatedly_at_target_size():
    m = regions(16, 16, [(0, 16, 0, 16), (0, 2, 0, 2), (0, 3, 14, 16)], low=-5.0, high=5.0)
    m[0] = 0.0
    r = postprocess_panoptic(outputs([SKY, PERSON, DOG], m), (16, 16))
    # person owns 4 px (<= 4: dropped), dog 6 px (kept)
    assert [s["category_id"] for s in r.segments] == [SKY, DOG]
    assert r.dropped[0]["query"] == 1 and r.dropped[0]["area"] == 4
    assert sum(s["area"] for s in r.segments) == 256
    # The same 2x2 person at a 4x larger target is 64 px and survives.
    big = postprocess_panoptic(outputs([SKY, PERSON, DOG], m), (16, 16), (64, 64))
    assert [s["category_id"] for s in big.segments] == [SKY, PERSON, DOG]


def test_target_size_differs_from_processed_size():
    m = regions(8, 8, [(0, 8, 0, 3), (0, 8, 3, 8)])
    r = postprocess_panoptic(outputs([TREE, SKY], m), (40, 40), (101, 63))
    assert r.id_map.shape == (101, 63)
    assert sum(s["area"] for s in r.segments) == 101 * 63
    assert r.winner_final.shape == (40, 40)
    # Nearest resize keeps the left/right split at the same relative position.
    col = np.argmax(r.id_map[50] == 1)
    assert abs(col / 63 - 3 / 8) < 0.05


def test_mask_logits_bilinear_resize_decides_borders():
    # Two queries, one ramp each way: the border is where the bilinear ramps cross.
    ramp = np.linspace(-1, 1, 4, dtype=np.float32)
    m = np.stack([np.tile(-ramp, (4, 1)), np.tile(ramp, (4, 1))])
    r = postprocess_panoptic(outputs([TREE, SKY], m), (4, 16))
    assert (r.id_map[:, :8] == 0).all() and (r.id_map[:, 8:] == 1).all()


def test_subset_rows_with_mask_queries():
    m = regions(8, 8, [(0, 8, 0, 4), (0, 8, 4, 8)])
    out = outputs([PERSON, 250, DOG], np.concatenate([m[:1], np.zeros((1, 8, 8)), m[1:]]))
    full = postprocess_panoptic(out, (8, 8))
    sub = dict(out, pred_masks=out["pred_masks"][:, [2, 0]], mask_queries=[2, 0])
    np.testing.assert_array_equal(postprocess_panoptic(sub, (8, 8)).id_map, full.id_map)
    with pytest.raises(ValueError, match="trace them first"):
        postprocess_panoptic(dict(sub, pred_masks=out["pred_masks"][:, [2]], mask_queries=[2]), (8, 8))


def test_unused_class_ids_get_readable_labels():
    cats = coco_categories()
    assert cats.label(12) == "unused id 12"
    assert cats.label(250) == "no object"
    assert cats.is_thing(12) and not cats.is_thing(92)
    r = postprocess_panoptic(outputs([12], np.ones((1, 4, 4))), (8, 8))
    assert r.segments[0]["name"] == "unused id 12"


def test_id_rgb_round_trip_and_exports():
    ids = np.array([[0, 1, 255], [256, 65535, 70000]])
    np.testing.assert_array_equal(rgb2id(id2rgb(ids)), ids)
    m = regions(4, 4, [(0, 4, 0, 2), (0, 4, 2, 4)])
    r = postprocess_panoptic(outputs([PERSON, SKY], m), (8, 8))
    assert r.png_bytes()[:4] == b"\x89PNG"
    assert '"category_id": 187' in r.segments_json()
    assert r.colorize().shape == (8, 8, 3)


def test_batch_form_and_official_style_sizes():
    postprocess_panoptic_batch = postprocess.postprocess_panoptic_batch
    a = outputs([PERSON, DOG, SKY], regions(8, 8, [(0, 4, 0, 4), (0, 4, 4, 8), (4, 8, 0, 8)]))
    b = outputs([TREE, 250, SKY], regions(8, 8, [(0, 8, 0, 4), (0, 1, 0, 1), (0, 8, 4, 8)]))
    batch = {k: torch.cat([a[k], b[k]]) for k in a}
    sizes = torch.tensor([[32, 32], [24, 40]])                  # (B, 2), as the official code takes them
    results = postprocess_panoptic_batch(batch, sizes, [(32, 32), (48, 80)], categories=COCO)
    for r, one, proc, tgt in zip(results, (a, b), sizes, [(32, 32), (48, 80)]):
        ref = postprocess_panoptic(one, tuple(proc.tolist()), tgt)
        np.testing.assert_array_equal(r.id_map, ref.id_map)
        assert r.segments == ref.segments
    assert results[1].id_map.shape == (48, 80) and [s["query"] for s in results[1].segments] == [0, 2]
    assert postprocess_panoptic_batch(batch, sizes, categories=COCO)[1].id_map.shape == (24, 40)      # target = processed
    # the official demo's processed size: torch.as_tensor(img.shape[-2:]).unsqueeze(0), shape (1, 2)
    r = postprocess_panoptic(a, torch.as_tensor([32, 32]).unsqueeze(0))
    assert r.id_map.shape == (32, 32)
    with pytest.raises(ValueError):
        postprocess_panoptic_batch(batch, sizes[:1], categories=COCO)
    with pytest.raises(ValueError, match="height, width"):
        postprocess_panoptic(a, (1, 2, 3))


def test_categories_are_required_not_silently_coco():
    """Without a table the merge cannot tell things from stuff: it says so instead of assuming COCO."""
    out = outputs([PERSON, SKY], regions(4, 4, [(0, 4, 0, 2), (0, 4, 2, 4)]))
    with pytest.raises(TypeError, match="category table"):
        postprocess.postprocess_panoptic(out, (8, 8))
    with pytest.raises(TypeError, match="category table"):
        postprocess.postprocess_panoptic_batch(out, [(8, 8)])
    with pytest.raises(ValueError, match="8 classes"):
        postprocess_panoptic(out, (8, 8), categories=coco_categories(8))
