"""The what-if lab: each intervention is exact (checked against the model's own modules run by hand
or with a hook), untouched requests reproduce the trace bit for bit, nonsense requests get a clear
error. Tiny models for the mechanics, the shipped toy model where the meaning matters."""
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import CONFIDENT
from PIL import Image

import detr_viz
from detr_viz import whatif
from detr_viz.cache import sizeof

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "assets" / "models" / "toyworld.pt"
STAR_SCENE = ROOT / "assets" / "toyworld" / "scene3.png"
STAR_BOX = (60, 0, 124, 49)          # the star of scene 3 (annotation bbox x, y, w, h = 60, 0, 64, 49)
# the adapter that brings each skip in, by the model's widths (checked in test_skip_adapters_take_those_levels)
ADAPTER = {"res4": "adapter1", "res3": "adapter2", "res2": "adapter3"}


@pytest.fixture(scope="module")
def tt(tiny_confident):
    """A trace of the biased tiny model: queries 0 and 3 (person), 4 and 6 (tree-merged: the stuff
    merge folds 6 into 4), 8 (sky) are kept."""
    return detr_viz.trace(tiny_confident, Image.new("RGB", (96, 64), (30, 160, 90)), size=64, threshold=0.85)


@pytest.fixture(scope="module")
def toy():
    if not SHIPPED.is_file():
        pytest.skip("assets/models/toyworld.pt not built yet")
    model = detr_viz.create_model("toyworld", weights="official", device="cpu")
    t = detr_viz.trace(model, STAR_SCENE)
    star = next(s["query"] for s in t.panoptic.segments if s["name"] == "star")
    return t, star


def by_hand(t, maps, features_off=False):
    """The model's mask head called directly on a concat of input_proj(Res5) (or zeros) and `maps`
    (M, h, w), the query beside a copy of itself as the trace runs it: (H/4, W/4)."""
    src = t["input_proj"]                                              # (1, d, h, w)
    if features_off:
        src = torch.zeros_like(src)
    bbox = maps[None, None].expand(1, 2, *maps.shape)                  # (1, 2, M, h, w)
    fpns = [t["backbone.res4"], t["backbone.res3"], t["backbone.res2"]]
    with torch.no_grad():
        return t.model.mask_head(src, bbox, fpns)[0, 0]                # (2, 1, H/4, W/4) -> (H/4, W/4)


# ---- exactness -------------------------------------------------------------------------------

def test_untouched_mask_is_the_traced_logits_bit_for_bit(tt, toy):
    for t in (tt, toy[0]):
        for q in t.mask_queries:
            r = whatif.mask(t, q)
            assert torch.equal(r.changed, t.mask_logits([q])[0]), q
            assert torch.equal(r.original, r.changed) and not r.diff.any() and r.iou == 1.0
    # renormalise with nothing off has nothing to do: still the traced logits
    assert torch.equal(whatif.mask(tt, 0, renormalise=True).changed, tt.mask_logits([0])[0])


def test_an_untraced_query_is_traced_first(tiny):
    t = detr_viz.trace(tiny, Image.new("RGB", (64, 64), (200, 10, 10)), size=64, threshold=0.9999)
    q = next(q for q in range(10) if q not in t.mask_queries)
    r = whatif.mask(t, q, heads_off=[1])
    assert q in t.mask_queries
    assert torch.equal(r.original, t.query("pred_masks", q)[0])
    assert torch.equal(whatif.mask(t, q).changed, r.original)


def test_all_heads_off_is_the_mask_head_on_zero_maps(tt):
    M = tt.config.nheads
    zero = by_hand(tt, torch.zeros_like(tt["bbox_attention"][0, 0]))
    for q in (0, 8):
        r = whatif.mask(tt, q, heads_off=range(M))
        assert torch.equal(r.changed, zero)
        assert torch.equal(whatif.mask(tt, q, attention_off=True).changed, zero)
        assert not torch.equal(r.changed, r.original)
    assert "heads 0, 1, 2, 3, 4, 5, 6 and 7 off" in r.sentence


@pytest.mark.parametrize("request_", [
    dict(heads_off=[2, 5]), dict(heads_off=[2, 5], renormalise=True), dict(attention="uniform"),
    dict(attention=("query", 3)), dict(attention=("shift", 1, -1)), dict(features_off=True),
    dict(attention=("shift", -2, 0), heads_off=[0], renormalise=True, features_off=True)])
def test_every_attention_change_is_the_mask_head_on_the_changed_concat(tt, request_):
    r = whatif.mask(tt, 0, **request_)
    assert torch.equal(r.changed, by_hand(tt, r.maps, request_.get("features_off", False)))
    assert not torch.equal(r.changed, r.original)
    assert torch.equal(r.diff, r.changed - r.original)


@pytest.mark.parametrize("request_", [dict(heads_off=[6], renormalise=True), dict(attention="uniform"),
                                      dict(attention=("shift", 2, 1), features_off=True)])
def test_toy_attention_changes_are_scaled_as_the_forward_scales_them(toy, request_):
    t, star = toy
    assert t.model.mask_head.attention_scale != 1            # the toy model scales the maps by 800
    r = whatif.mask(t, star, **request_)
    assert torch.equal(r.changed, by_hand(t, r.maps, request_.get("features_off", False)))


def test_heads_off_zero_or_renormalise(tt):
    orig = tt["bbox_attention"][0, 0]                                  # (M, h, w), sums to 1
    zeroed = whatif.mask(tt, 0, heads_off=[2, 5]).maps
    renorm = whatif.mask(tt, 0, heads_off=[2, 5], renormalise=True).maps
    assert not zeroed[[2, 5]].any() and not renorm[[2, 5]].any()
    on = [0, 1, 3, 4, 6, 7]
    assert torch.equal(zeroed[on], orig[on])
    torch.testing.assert_close(zeroed.sum(), 1 - orig[[2, 5]].sum())
    torch.testing.assert_close(renorm.sum(), torch.tensor(1.0))       # the budget is 1 again
    torch.testing.assert_close(renorm[on], orig[on] / orig[on].sum())  # the same proportions
    r = whatif.mask(tt, 0, heads_off=[2, 5], renormalise=True)
    assert "heads 2 and 5 off, the rest renormalised" in r.sentence


def test_attention_replacements(tt):
    bbox = tt["bbox_attention"][0]                                     # (N, M, h, w)
    M, h, w = bbox.shape[1:]
    uni = whatif.mask(tt, 0, attention="uniform").maps
    torch.testing.assert_close(uni, torch.full((M, h, w), 1 / (M * h * w)))
    assert torch.equal(whatif.mask(tt, 0, attention=("query", 3)).maps, bbox[3])
    moved = whatif.mask(tt, 0, attention=("shift", 1, -1)).maps        # one right, one up
    assert torch.equal(moved[:, :h - 1, 1:], bbox[0, :, 1:, :w - 1])
    assert not moved[:, :, 0].any() and not moved[:, h - 1].any()
    assert "shifted 1 cell right and 1 cell up" in whatif.mask(tt, 0, attention=("shift", 1, -1)).sentence
    # another query's maps on query 0 give query 3's mask: the maps are all that differs per query
    assert torch.equal(whatif.mask(tt, 0, attention=("query", 3)).changed, tt.mask_logits([3])[0])


def test_skip_adapters_take_those_levels(tt):
    head, t = tt.model.mask_head, tt
    assert head.adapter1.in_channels == t["backbone.res4"].shape[1]
    assert head.adapter2.in_channels == t["backbone.res3"].shape[1]
    assert head.adapter3.in_channels == t["backbone.res2"].shape[1]


@pytest.mark.parametrize("skips", [["res4"], ["res3"], ["res2"], ["res2", "res4"]])
def test_dropping_a_skip_is_the_forward_with_that_adapter_zeroed(tt, skips):
    model, q = tt.model, 3
    hooks = [getattr(model.mask_head, ADAPTER[s]).register_forward_hook(lambda m, a, out: out * 0)
             for s in skips]
    try:
        with torch.no_grad():
            det = model.detect(tt["input"])
            bbox = model.attention_maps(det)                                    # (1, N, M, h, w)
            full = model.mask_logits(det, bbox)[0, q]                           # all N queries at once
            pair = model.mask_logits(det, bbox[:, [q, q]])[0, 0]                # q beside a copy
    finally:
        for hk in hooks:
            hk.remove()
    r = whatif.mask(tt, q, skips_off=skips)
    torch.testing.assert_close(r.changed, full, atol=1e-4, rtol=1e-4)
    assert torch.equal(r.changed, pair)
    assert not torch.equal(r.changed, r.original)
    assert r.request.skips_off == tuple(s for s in ("res4", "res3", "res2") if s in skips)


def test_skips_each_change_the_mask_differently(tt):
    masks = [whatif.mask(tt, 0, skips_off=[s]).changed for s in ("res4", "res3", "res2")]
    assert not torch.equal(masks[0], masks[1]) and not torch.equal(masks[1], masks[2])


# ---- the toy model: what the parts do ----------------------------------------------------------

def test_toy_thing_masks_live_in_one_head(toy):
    """The documented experiment (docs/whatif.md): the star's attention is in head 7; switching it
    off dissolves the mask, switching the seven others off changes nothing; attention alone (no
    features) nearly gives the mask, features alone give nothing."""
    t, star = toy
    off7 = whatif.mask(t, star, heads_off=[7])
    rest = whatif.mask(t, star, heads_off=range(7))
    assert float(t["bbox_attention"][0, star, 7].sum()) > 0.99
    assert off7.area_before > 50 and off7.area_after == 0 and off7.iou == 0.0
    assert rest.iou > 0.99
    assert whatif.mask(t, star, features_off=True).iou > 0.9
    assert whatif.mask(t, star, attention_off=True).area_after == 0
    assert "With head 7 off, query" in off7.sentence and "(star)" in off7.sentence and "IoU 0.00" in off7.sentence


# ---- merge -----------------------------------------------------------------------------------

def assert_same_panoptic(a, b):
    np.testing.assert_array_equal(a.id_map, b.id_map)
    assert a.segments == b.segments
    np.testing.assert_array_equal(a.kept, b.kept)
    np.testing.assert_array_equal(a.winner_final, b.winner_final)


def test_untouched_merge_is_the_traced_panoptic(tt, toy):
    for t in (tt, toy[0]):
        r = whatif.merge(t)
        assert_same_panoptic(r.changed, t.panoptic)
        assert r.changed_share == 0.0 and not r.owner_changed.any()


def test_threshold_joins_the_lab(tt):
    r = whatif.merge(tt, threshold=0.5)                                  # query 1 (about 0.6) joins
    assert_same_panoptic(r.changed, tt.merge(0.5))
    assert 1 in r.changed.kept.tolist() and "threshold 0.50 instead of 0.85" in r.sentence


def test_dropping_a_query_hands_its_pixels_to_the_others(toy):
    t, star = toy
    r = whatif.merge(t, drop_queries=[star])
    before = t.panoptic.query_map
    assert star not in r.changed.query_map and star not in r.changed.kept.tolist()
    assert sum(r.taken_by[star].values()) == int((before == star).sum()) > 0
    assert -1 not in r.taken_by[star]                                  # no void: someone takes every pixel
    # pixels the star did not own keep their owner (no stuff merge or small segment in this scene)
    np.testing.assert_array_equal(r.changed.query_map[before != star], before[before != star])
    assert r.changed_share == pytest.approx((before == star).mean())
    np.testing.assert_array_equal(r.changed.scores, t.panoptic.scores)   # the real scores, not "no object"
    np.testing.assert_array_equal(r.changed.labels, t.panoptic.labels)
    top = max(r.taken_by[star], key=r.taken_by[star].get)
    assert f"px to query {top} (" in r.sentence


def test_stuff_merge_off_keeps_the_duplicate(tt):
    assert tt.panoptic.stuff_merges and [d["query"] for d in tt.panoptic.dropped] == [6]
    r = whatif.merge(tt, stuff_merge=False)
    seg = r.changed.segment_of_query(6)
    assert seg is not None and seg["area"] > 4 and seg["isthing"] is False
    assert r.changed.stuff_merges == [] and r.changed.dropped == []
    assert [s["isthing"] for s in r.changed.segments] == [q in (0, 3) for q in r.changed.kept.tolist()]
    np.testing.assert_array_equal(r.changed.winner_after_merge, tt.panoptic.winner_before_merge)
    assert r.changed_share > 0


def test_small_filter_off_keeps_every_kept_query(tt, toy):
    kept = sorted(CONFIDENT)
    r = whatif.merge(tt, small_filter=False)                           # the folded duplicate stays, 0 px
    assert [s["query"] for s in r.changed.segments] == kept
    assert r.changed.segment_of_query(6)["area"] == 0
    np.testing.assert_array_equal(r.changed.winner_final, tt.panoptic.winner_after_merge)
    both = whatif.merge(tt, stuff_merge=False, small_filter=False)     # the first pass, no merge
    np.testing.assert_array_equal(both.changed.winner_final, tt.panoptic.winner_before_merge)
    assert sum(s["area"] for s in both.changed.segments) == both.changed.id_map.size
    # where the filter has nothing to drop, switching it off changes nothing
    t = toy[0]
    assert t.panoptic.rounds == 0
    assert_same_panoptic(whatif.merge(t, small_filter=False).changed, t.panoptic)


# ---- occlusion -------------------------------------------------------------------------------

def test_occluding_the_star(toy):
    t, star = toy
    steps = []
    r = whatif.occlude(t, STAR_BOX, progress=lambda step, text: steps.append(step))
    assert steps[0] == 1 and steps[-1] == 7
    px = np.asarray(r.image)
    assert (px[0:49, 60:124] == 128).all()
    np.testing.assert_array_equal(px[60:], np.asarray(t.image)[60:])
    assert r.changed.id_map.shape == t.panoptic.id_map.shape
    seg = r.changed.segment_of_query(star)
    assert seg is None or seg["name"] != "star" or seg["area"] < 0.5 * t.panoptic.segment_of_query(star)["area"]
    assert r.changed_share > 0.02 and r.kept_before == t.panoptic.kept.tolist()
    assert "Greying out 64 x 49 px" in r.sentence
    assert whatif.occlude(t, STAR_BOX) is r and not steps[len(steps):]   # cached per trace


# ---- caching and nonsense ----------------------------------------------------------------------

def test_results_are_cached_per_trace(tt):
    a = whatif.mask(tt, 0, heads_off=[5, 2])
    assert whatif.mask(tt, 0, heads_off=(2, 5)) is a
    assert whatif.mask(tt, 0, heads_off=[2]) is not a
    m = whatif.merge(tt, drop_queries=[0])
    assert whatif.merge(tt, drop_queries=(0,)) is m and m.original is tt.panoptic
    # the trace's own panoptic result is not counted again in the cache's bytes
    assert sizeof(m) < sizeof(m.changed) + sizeof(m.owner_changed) + 10_000
    assert tt.derived.nbytes > 0
    # a request survives a round trip through plain keyword arguments (as a URL would keep it)
    r = whatif.mask(tt, 0, heads_off=[5, 2], renormalise=True, attention=("shift", 1, 0), skips_off="res2")
    assert r.request.as_kwargs() == dict(heads_off=[2, 5], renormalise=True, attention=["shift", 1, 0],
                                         skips_off=["res2"])
    assert whatif.mask(tt, 0, **r.request.as_kwargs()) is r


def test_occlusion_keeps_a_custom_input_size(tt):
    r = whatif.occlude(tt, (0, 0, 48, 64))                               # the left half of the 96 x 64 photo
    assert r.changed.processed_size == tt.panoptic.processed_size == (64, 96)
    assert r.changed.id_map.shape == tt.panoptic.id_map.shape
    assert (np.asarray(r.image)[:, :48] == 128).all() and r.kept_before == tt.panoptic.kept.tolist()


@pytest.mark.parametrize("kwargs,message", [
    (dict(heads_off=[8]), "head 8 is out of range: this model has 8 heads"),
    (dict(heads_off=[-1]), "head -1 is out of range"),
    (dict(heads_off=["2"]), "not a head index"),
    (dict(skips_off=["res5"]), "unknown skip 'res5': choose from res4, res3, res2"),
    (dict(attention="gaussian"), "not understood"),
    (dict(attention=("query", 10)), "out of range: this model has 10 queries"),
    (dict(attention=("shift", 5, 0)), r"moves the maps off the 2 x 3 grid"),
    (dict(attention_off=True, heads_off=[1]), "attention_off already zeroes"),
    (dict(heads_off=range(8), renormalise=True), "nothing is left to renormalise"),
])
def test_nonsense_mask_requests_say_what_is_wrong(tt, kwargs, message):
    with pytest.raises(ValueError, match=message):
        whatif.mask(tt, 0, **kwargs)


def test_nonsense_queries_and_boxes_say_what_is_wrong(tt):
    with pytest.raises(ValueError, match=r"query 10 is out of range: this model has 10 queries \(0..9\)"):
        whatif.mask(tt, 10)
    with pytest.raises(ValueError, match="'3' is not a query index: give a whole number 0..9"):
        whatif.mask(tt, "3")
    with pytest.raises(ValueError, match="empty list"):
        whatif.merge(tt, drop_queries=[])
    with pytest.raises(ValueError, match=r"2 is not kept at threshold 0.85.*kept queries \[0, 3, 4, 6, 8\]"):
        whatif.merge(tt, drop_queries=[2])
    with pytest.raises(ValueError, match="out of range"):
        whatif.merge(tt, drop_queries=[0, 12])
    with pytest.raises(ValueError, match="probability"):
        whatif.merge(tt, threshold=1.5)
    with pytest.raises(ValueError, match="covers no pixel"):
        whatif.occlude(tt, (10, 10, 10, 40))
    with pytest.raises(ValueError, match="covers no pixel"):
        whatif.occlude(tt, (200, 0, 300, 10))


def test_pictures_show_the_change(toy):
    from detr_viz.whatif import pictures as P
    t, star = toy
    r = whatif.mask(t, star, heads_off=[7])                            # the star's mask disappears
    change = np.asarray(P.change_picture(r.original, r.changed, 80))
    assert change.shape == (80, 80, 3)
    assert (change == P.LOST).all(-1).sum() > 0 and not (change == P.GAINED).all(-1).any()
    overlay = np.asarray(P.mask_overlay(t, r.original, 160)).astype(int)
    photo = np.asarray(t.pre.resized_image).astype(int)
    inside = (r.original > 0).repeat_interleave(4, 0).repeat_interleave(4, 1).numpy()
    assert (overlay[inside] == photo[inside]).all() and (overlay[~inside] < photo[~inside] + 1).all()
    assert len(P.head_maps(r.maps, 40)) == t.config.nheads
    assert P.owner_change_picture(whatif.merge(t, drop_queries=[star]), 80).size == (80, 80)
