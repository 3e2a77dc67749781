"""Tests that kill the mutants of detr_viz/postprocess.py that survived the rest of the suite.

Each test names the behaviour it pins; docs/testing.md lists the mutants (scripts/mutation.sh postprocess).
"""
from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from detr_viz.categories import coco_categories
from detr_viz.postprocess import postprocess_panoptic, rgb2id

C = 251                               # 250 classes + no-object
PERSON, DOG, SKY, NO_OBJECT = 1, 18, 187, 250
COCO = coco_categories(250)


def outputs(labels, masks, conf=10.0):
    """labels: class per query; masks: (N, h, w) logits."""
    logits = torch.zeros(1, len(labels), C)
    for q, lab in enumerate(labels):
        logits[0, q, lab] = conf
    return {"pred_logits": logits, "pred_masks": torch.as_tensor(np.asarray(masks), dtype=torch.float32)[None]}


def halves(h=4, w=4):
    """Two masks: left half, right half (logits +10 inside, -10 outside)."""
    m = np.full((2, h, w), -10.0, np.float32)
    m[0, :, : w // 2] = 10.0
    m[1, :, w // 2:] = 10.0
    return m


def three_queries():
    m = np.concatenate([halves()[:1], np.zeros((1, 4, 4), np.float32), halves()[1:]])   # (3, 4, 4)
    return postprocess_panoptic(outputs([PERSON, NO_OBJECT, SKY], m), (8, 8), categories=COCO)


def test_segment_of_query_finds_the_kept_query_only():
    r = three_queries()
    assert r.segment_of_query(2) is r.segments[1] and r.segment_of_query(2)["category_id"] == SKY
    assert r.segment_of_query(0) is r.segments[0]
    assert r.segment_of_query(1) is None                     # no-object: not a segment


def test_official_png_encodes_segment_ids():
    r = three_queries()
    png = Image.open(io.BytesIO(r.official_png_bytes()))
    assert png.format == "PNG" and png.mode == "RGB" and png.size == (8, 8)
    ids = rgb2id(np.asarray(png))                            # (8, 8)
    np.testing.assert_array_equal(ids, r.id_map)
    assert ids[:, :4].tolist() == [[0] * 4] * 8 and ids[:, 4:].tolist() == [[1] * 4] * 8


# ---- the colour picture ----------------------------------------------------------------------------------
def test_colorize_paints_segment_colors_and_blends_only_when_asked():
    r = three_queries()
    left, right = (np.array(s["color"], np.float32) for s in r.segments)
    plain = r.colorize()                                     # (8, 8, 3) uint8
    assert plain.dtype == np.uint8 and plain.shape == (8, 8, 3)
    assert (plain[:, :4] == left).all() and (plain[:, 4:] == right).all() and left.any()
    image = np.full((8, 8, 3), 200, np.uint8)
    np.testing.assert_array_equal(r.colorize(image), plain)                 # alpha defaults to 0: no blend
    np.testing.assert_array_equal(r.colorize(None, 0.5), plain)             # nothing to blend with
    np.testing.assert_array_equal(r.colorize(image, 0.0), plain)
    blended = r.colorize(image, 0.25)                        # 0.75 colour + 0.25 image, truncated
    np.testing.assert_array_equal(blended[0, 0], (0.75 * left + 0.25 * 200).astype(np.uint8))
    np.testing.assert_array_equal(blended[0, 7], (0.75 * right + 0.25 * 200).astype(np.uint8))


def test_colorize_of_an_empty_result_is_black():
    r = postprocess_panoptic(outputs([NO_OBJECT, NO_OBJECT], halves()), (6, 5), categories=COCO)
    out = r.colorize()
    assert out.shape == (6, 5, 3) and out.dtype == np.uint8 and not out.any()


# ---- the batch form ------------------------------------------------------------------------------------------
def test_batch_passes_the_category_table_and_names_the_size_mismatch():
    from detr_viz.categories import Category, CategoryTable
    from detr_viz.postprocess import postprocess_panoptic_batch
    table = CategoryTable("pets", [Category(0, "cat", True, (10, 20, 30)), Category(1, "grass", False, (0, 90, 0))], 2)
    logits = torch.zeros(2, 2, 3)
    logits[:, 0, 0] = logits[:, 1, 1] = 10.0                 # query 0: cat, query 1: grass, in both images
    masks = torch.as_tensor(np.stack([halves(), halves()[::-1].copy()]))    # (2, 2, 4, 4)
    results = postprocess_panoptic_batch({"pred_logits": logits, "pred_masks": masks}, [(8, 8), (8, 8)],
                                         categories=table)
    assert [[(s["name"], s["isthing"]) for s in r.segments] for r in results] == [[("cat", True), ("grass", False)]] * 2
    assert results[1].id_map[0, 0] == 1                      # image 1 has its own masks (swapped halves)
    try:
        postprocess_panoptic_batch({"pred_logits": logits, "pred_masks": masks}, [(8, 8)])
    except ValueError as e:
        assert str(e) == "2 images in the outputs, but 1 processed sizes and 1 target sizes"
    else:
        raise AssertionError("a size list of the wrong length must be refused")


def test_segments_json_is_readable_and_complete():
    import json
    r = postprocess_panoptic(outputs([PERSON, SKY], halves()), (8, 8), (6, 10), threshold=0.7, categories=COCO)
    text = r.segments_json()
    segments = [dict(s, color=list(s["color"])) for s in r.segments]     # JSON has no tuples
    assert json.loads(text) == {"segments_info": segments, "threshold": 0.7,
                                "processed_size": [8, 8], "target_size": [6, 10]}
    assert text.startswith('{\n  "segments_info": [\n    {\n      "id": 0,')      # indented for reading
    png = Image.open(io.BytesIO(r.png_bytes()))
    assert png.format == "PNG" and png.size == (10, 6)
    np.testing.assert_array_equal(np.asarray(png), r.colorize())


def test_instance_colors_are_stable_shades_of_the_category_color():
    from detr_viz.postprocess import instance_color
    base = (220, 20, 60)
    assert instance_color(base, 0) == base
    shades = [instance_color(base, k) for k in (1, 2, 3)]
    assert shades == [instance_color(base, k) for k in (1, 2, 3)]            # deterministic
    assert shades[:2] == [(170, 49, 27), (185, 0, 11)]                      # pinned: the same from run to run
    assert len(set(shades) | {base}) == 4                                    # each instance its own shade
    assert all(abs(c - b) <= 60 for s in shades for c, b in zip(s, base))
    for edge in [(0, 0, 0), (255, 255, 255)]:                                # stays a colour
        assert all(0 <= c <= 255 for k in range(1, 9) for c in instance_color(edge, k))
        assert len({instance_color(edge, k) for k in range(1, 9)}) > 1
