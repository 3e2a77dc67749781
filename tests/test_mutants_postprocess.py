"""Tests that kill the mutants of detr_viz/postprocess.py that survived the rest of the suite.

Each test names the behaviour it pins; docs/testing.md lists the mutants (scripts/mutation.sh postprocess).
"""
from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from detr_viz.postprocess import postprocess_panoptic, rgb2id

C = 251                               # 250 classes + no-object
PERSON, DOG, SKY, NO_OBJECT = 1, 18, 187, 250


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
    return postprocess_panoptic(outputs([PERSON, NO_OBJECT, SKY], m), (8, 8))


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
