"""Panoptic Quality on hand-made cases (COCO panoptic definition)."""
import numpy as np
import pytest

from detr_viz.metrics import PQAccumulator, match_segments, panoptic_quality

ISTHING = {0: True, 1: False}


def seg(i, cat):
    return {"id": i, "category_id": cat}


def two_region_gt():
    """10 x 10: left half stuff (cat 1, id 1), a 4 x 4 thing (cat 0, id 2) in the right half."""
    ids = np.ones((10, 10), np.int32)
    ids[2:6, 6:10] = 2
    return ids, [seg(1, 1), seg(2, 0)]


def test_perfect_match_is_100():
    gt_ids, gt_segs = two_region_gt()
    s = panoptic_quality([(gt_ids, gt_segs, gt_ids, gt_segs)], ISTHING)
    for group in ("all", "things", "stuff"):
        assert s[group]["pq"] == pytest.approx(100.0)
        assert s[group]["sq"] == pytest.approx(100.0)
        assert s[group]["rq"] == pytest.approx(100.0)


def test_prediction_ids_need_not_equal_gt_ids():
    gt_ids, gt_segs = two_region_gt()
    pred_ids = np.where(gt_ids == 1, 0, 7)                # ids 0 and 7 (0 is a real segment here)
    s = panoptic_quality([(gt_ids, gt_segs, pred_ids, [seg(0, 1), seg(7, 0)])], ISTHING)
    assert s["all"]["pq"] == pytest.approx(100.0)


def test_one_missed_segment():
    gt_ids, gt_segs = two_region_gt()
    pred_ids = np.ones_like(gt_ids)                       # the thing is painted as stuff
    s = panoptic_quality([(gt_ids, gt_segs, pred_ids, [seg(1, 1)])], ISTHING)
    # thing: TP 0, FN 1 -> PQ 0. stuff: IoU 84/100, TP 1 -> PQ 84.
    assert s["per_class"][0] == {"pq": 0.0, "sq": 0.0, "rq": 0.0, "tp": 0, "fp": 0, "fn": 1}
    assert s["per_class"][1]["pq"] == pytest.approx(84.0)
    assert s["all"]["pq"] == pytest.approx(42.0)


def test_one_false_positive():
    gt_ids, gt_segs = two_region_gt()
    pred_ids = gt_ids.copy()
    pred_ids[0:2, 0:2] = 3                                 # an extra 2 x 2 thing on the stuff
    pred = [seg(1, 1), seg(2, 0), seg(3, 0)]
    s = panoptic_quality([(gt_ids, gt_segs, pred_ids, pred)], ISTHING)
    # thing class: TP 1 (IoU 1), FP 1 -> RQ = 1 / 1.5, PQ = 66.7
    th = s["per_class"][0]
    assert (th["tp"], th["fp"], th["fn"]) == (1, 1, 0)
    assert th["pq"] == pytest.approx(100 / 1.5)
    assert s["per_class"][1]["pq"] == pytest.approx(100 * 80 / 84)   # stuff lost 4 px


def _line_case(gt_len: int):
    """1 x 200 map: GT thing = the first gt_len pixels (rest stuff); prediction: all 200 px thing.
    IoU of the thing pair = gt_len / 200."""
    gt = np.zeros((1, 200), np.int32)
    gt[0, :gt_len] = 1
    pred = np.ones((1, 200), np.int32)
    return gt, [seg(0, 1), seg(1, 0)], pred, [seg(1, 0)]


def test_iou_just_under_half_is_no_match():
    for gt_len in (99, 100):                               # IoU 0.495, and exactly 0.5 (not > 0.5)
        out = list(match_segments(*_line_case(gt_len)))
        assert sorted(k for c, k, _ in out if c == 0) == ["fn", "fp"]


def test_iou_just_over_half_is_a_match():
    out = list(match_segments(*_line_case(101)))          # IoU 0.505
    thing = [(k, iou) for c, k, iou in out if c == 0]
    assert thing == [("tp", pytest.approx(101 / 200))]
    s = panoptic_quality([_line_case(101)], ISTHING)
    assert s["per_class"][0]["pq"] == pytest.approx(100 * 101 / 200)
    assert s["per_class"][1]["fn"] == 1                   # the stuff segment was not predicted


def test_wrong_category_is_fp_and_fn():
    gt_ids, gt_segs = two_region_gt()
    s = panoptic_quality([(gt_ids, gt_segs, gt_ids, [seg(1, 1), seg(2, 1)])], ISTHING)
    assert s["per_class"][0]["fn"] == 1
    assert s["per_class"][1]["fp"] == 1


def test_void_pixels_are_ignored():
    # GT: id 0 is not a segment -> void. Left 5 columns void, right 5 columns thing (50 px).
    gt = np.zeros((10, 10), np.int32)
    gt[:, 5:] = 1
    gt_segs = [seg(1, 0)]
    # The prediction covers the whole image as the thing: union minus void = 50 -> IoU 1.
    pred = np.full((10, 10), 4, np.int32)
    s = panoptic_quality([(gt, gt_segs, pred, [seg(4, 0)])], ISTHING)
    assert s["per_class"][0]["pq"] == pytest.approx(100.0)
    # An extra prediction lying mostly on void is not a false positive ...
    pred2 = pred.copy()
    pred2[0:4, 0:4] = 5
    out = list(match_segments(gt, gt_segs, pred2, [seg(4, 0), seg(5, 1)]))
    assert [k for _, k, _ in out] == ["tp"]
    # ... but one lying on labelled pixels is.
    pred3 = pred.copy()
    pred3[0:4, 6:10] = 5
    out = list(match_segments(gt, gt_segs, pred3, [seg(4, 0), seg(5, 1)]))
    assert sorted(k for _, k, _ in out) == ["fp", "tp"]


def test_unlabelled_prediction_pixels_and_empty_prediction():
    gt_ids, gt_segs = two_region_gt()
    pred = np.zeros_like(gt_ids)                           # nothing predicted (id 0 not listed)
    s = panoptic_quality([(gt_ids, gt_segs, pred, [])], ISTHING)
    assert s["all"]["pq"] == 0.0
    assert s["per_class"][0]["fn"] == 1 and s["per_class"][1]["fn"] == 1


def test_accumulates_over_images_and_skips_absent_classes():
    gt_ids, gt_segs = two_region_gt()
    acc = PQAccumulator()
    acc.add(gt_ids, gt_segs, gt_ids, gt_segs)
    acc.add(gt_ids, gt_segs, np.ones_like(gt_ids), [seg(1, 1)])
    s = acc.summary({0: True, 1: False, 2: True})          # class 2 never occurs: not averaged
    assert s["things"]["n"] == 1
    th = s["per_class"][0]
    assert (th["tp"], th["fn"]) == (1, 1)
    assert th["pq"] == pytest.approx(100 / 1.5)
