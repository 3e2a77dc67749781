"""detr_viz.explain.step5_concat_res5 / step6_upsampling / step7_merge / tensors (pages 5-8): every claim a page makes is
checked against the live tensors or against the official merge's own maps."""
import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import TINY, confident_model, tiny_model
from PIL import Image

import detr_viz
from detr_viz.categories import coco_categories
from detr_viz.explain import step5_concat_res5 as concat
from detr_viz.explain import step6_upsampling as upsampling
from detr_viz.explain import step7_merge as merge
from detr_viz.explain import step7_merge_pixel as pixel
from detr_viz.explain import tensors
from detr_viz.postprocess import _resize_ids, postprocess_panoptic

SIZE = 160          # small network input: fast traces


@pytest.fixture(scope="module")
def t(photo_bytes):
    """Tiny confident model: queries 0, 3 person, 4 and 6 tree-merged (a duplicate), 8 sky."""
    return detr_viz.trace(confident_model(), photo_bytes, size=SIZE)


# ---------------------------------------------------------------------------------------------
# step 5: concat
# ---------------------------------------------------------------------------------------------
def test_concat_stack_is_input_proj_plus_this_querys_maps(t):
    s = concat.concat_stack(t, 3, other=0)
    d, M = TINY.hidden_dim, TINY.nheads
    assert (s.d, s.M, s.channels, s.grid) == (d, M, d + M, t.grid)
    assert all(c["holds"] for c in s.checks), s.checks
    np.testing.assert_array_equal(s.features, t["input_proj"][0].numpy())
    np.testing.assert_array_equal(s.attention, t["bbox_attention"][0, 3].numpy())
    assert not np.array_equal(s.features, t["memory"][0].numpy())        # not the encoder output
    assert s.head_share().sum() == pytest.approx(1.0, abs=1e-5)
    assert s.full_forward_mb == pytest.approx(TINY.num_queries * (d + M) * t.grid[0] * t.grid[1] * 4 / 1e6)
    other = concat.concat_stack(t, 0, other=3)
    np.testing.assert_array_equal(other.features, s.features)          # same d channels for every query
    assert not np.array_equal(other.attention, s.attention)


def test_concat_untraced_query_runs_only_its_mask_head(t):
    new = next(q for q in range(TINY.num_queries) if q not in t.mask_queries)
    s = concat.concat_stack(t, new)
    assert new in t.mask_queries and all(c["holds"] for c in s.checks)


def test_concat_reports_the_attention_scale(photo_bytes):
    model = tiny_model(TINY.replace(bbox_attention_scale=4.0), seed=2)
    tr = detr_viz.trace(model, photo_bytes, size=SIZE, queries=[1, 2])
    s = concat.concat_stack(tr, 1, other=2)
    assert s.scale == 4.0 and all(c["holds"] for c in s.checks), s.checks
    np.testing.assert_allclose(s.attention, 4.0 * tr["bbox_attention"][0, 1].numpy(), rtol=1e-6)
    assert s.attention.sum() == pytest.approx(4.0, rel=1e-4)


def test_concat_feature_channel_choices_and_pictures(t):
    s = concat.concat_stack(t, 0)
    assert concat.feature_channels(s, 5, "first") == [0, 1, 2, 3, 4]
    spaced = concat.feature_channels(s, 4, "spaced")
    assert spaced[0] == 0 and spaced[-1] == s.d - 1
    top = concat.feature_channels(s, 3, "variance")
    var = s.features.reshape(s.d, -1).var(1)
    assert sorted(top) == sorted(np.argsort(-var)[:3].tolist())
    deck = concat.stack_picture(s, top)
    assert deck.width > 600 and deck.height > 300
    assert concat.attention_grid(s).width >= 4 * 200
    assert concat.feature_grid(s, top).size[0] > 0


# ---------------------------------------------------------------------------------------------
# step 6: upsampling
# ---------------------------------------------------------------------------------------------
def test_channel_plan_reads_model_widths_and_live_shapes(t):
    rows = upsampling.channel_plan(t)
    d, M = TINY.hidden_dim, TINY.nheads
    assert [r["resolution"] for r in rows] == ["1/32"] * 3 + ["1/16"] * 2 + ["1/8"] * 2 + ["1/4"] * 3
    assert rows[0]["channels"] == f"{d} + {M} = {d + M}"
    assert rows[1]["channels"] == f"{d + M} → {d + M}" and f"GroupNorm(8, {d + M})" in rows[1]["operation"]
    assert rows[2]["channels"] == f"{d + M} → {d // 2}"
    assert rows[-1]["channels"] == f"{d // 16} → 1"
    assert rows[-1]["shape (one query)"] == "1 x " + " x ".join(map(str, t.shape("pred_masks")[-2:]))
    assert "Res4" in rows[3]["stage"] and "Res2" in rows[7]["stage"]


@pytest.mark.parametrize("view", ["pc1", "mean", 3])
def test_fpn_views_are_linear_so_up_plus_skip_is_the_sum(t, view):
    for k in (1, 2, 3):
        lv = upsampling.fpn_level(t, 0, k, view)
        assert lv.max_sum_error == 0.0
        np.testing.assert_allclose(lv.up + lv.skip, lv.total, atol=1e-4)
        assert lv.total.shape == tuple(t.shape(f"mask_head.fpn{k}")[-2:])
        assert lv.from_hw == tuple(t.shape(f"mask_head.relu{k + 1}")[-2:])
        assert upsampling.fpn_picture(lv).width > 900
    skip0 = upsampling.fpn_level(t, 0, 2, "mean").skip
    np.testing.assert_array_equal(skip0, upsampling.fpn_level(t, 3, 2, "mean").skip)   # same for every query


def test_sharpening_goes_from_the_res5_grid_to_the_mask_grid(t):
    st = upsampling.sharpening(t, 3)
    assert [s.resolution for s in st] == ["1/32", "1/32", "1/16", "1/8", "1/4", "1/4"]
    assert [s.hw for s in st] == [t.grid, t.grid, *(tuple(t.shape(f"mask_head.relu{k}")[-2:]) for k in (3, 4, 5)),
                                  tuple(t.shape("pred_masks")[-2:])]
    np.testing.assert_array_equal(st[-1].values, t.query("pred_masks", 3)[0].numpy())
    assert all(s.corr >= 0 for s in st[1:])                               # oriented towards the mask
    np.testing.assert_allclose(st[0].values, t["bbox_attention"][0, 3].sum(0).numpy(), rtol=1e-5)
    assert upsampling.sharpening_picture(st).width > 900


def test_principal_component_and_correlation():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(6, 5))
    x = np.stack([2 * base, -base, 0.01 * rng.normal(size=(6, 5))])       # (3, 6, 5): one dominant direction
    v = upsampling.first_component(x)
    assert abs(abs(v @ np.array([2, -1, 0]) / np.sqrt(5)) - 1) < 1e-3
    assert upsampling.correlation(base, 3 * base + 1) == pytest.approx(1.0)
    assert upsampling.correlation(base, -base) == pytest.approx(-1.0)
    assert upsampling.resize_to(np.ones((8, 8)), (2, 2)).shape == (2, 2)


# ---------------------------------------------------------------------------------------------
# step 7: merge, on hand-made outputs with clear-cut logits
# ---------------------------------------------------------------------------------------------
PERSON, TREE, SKY, NO_OBJECT = 1, 184, 187, 250


class FakeTrace:
    """What merge.* reads from a trace: pred_masks rows of mask_queries, shapes, categories."""

    def __init__(self, logits, masks):
        self.tensors = {"pred_logits": logits, "pred_masks": masks}
        self.mask_queries = list(range(masks.shape[1]))
        self.categories = coco_categories(250)

    def __getitem__(self, name):
        return self.tensors[name]

    def shape(self, name):
        return tuple(self.tensors[name].shape)

    def mask_logits(self, queries):                       # (K, h4, w4)
        return self.tensors["pred_masks"][0, [int(q) for q in queries]]


@pytest.fixture(scope="module")
def synthetic():
    """q0 person (left), q1 tree, q2 tree (a duplicate, right half), q3 sky (top), q4 no-object,
    q5 person at low score; mask grid 12 x 16, processed 48 x 64, target 50 x 70."""
    h4, w4 = 12, 16
    yy, xx = np.mgrid[0:h4, 0:w4].astype(np.float32)
    masks = np.stack([
        6 - np.hypot(yy - 8, xx - 3),            # person blob, left
        2 - 0.5 * np.abs(xx - 10) - 0.3 * np.abs(yy - 8),   # tree
        3 - 0.4 * np.abs(xx - 13) - 0.2 * np.abs(yy - 9),   # duplicate tree, further right
        (4 - yy) * 1.5,                            # sky: top rows
        np.full((h4, w4), 9.0),                    # no-object (never kept)
        np.full((h4, w4), 9.0),                    # low score (never kept)
    ]).astype(np.float32)
    logits = torch.zeros(1, 6, 251)
    for q, (lab, conf) in enumerate([(PERSON, 10), (TREE, 10), (TREE, 9), (SKY, 10), (NO_OBJECT, 10), (PERSON, 0.5)]):
        logits[0, q, lab] = conf
    masks = torch.as_tensor(masks)[None]
    out = {"pred_logits": logits, "pred_masks": masks}
    res = postprocess_panoptic(out, (48, 64), (50, 70), 0.85, coco_categories(250))
    return FakeTrace(logits, masks), res


def test_synthetic_merge_has_a_stuff_duplicate(synthetic):
    _, r = synthetic
    assert list(r.kept) == [0, 1, 2, 3]
    assert r.stuff_merges == [{"category_id": TREE, "name": "tree-merged", "queries": [1, 2]}]
    assert [d["query"] for d in r.dropped] == [2]


def test_nearest_index_matches_the_merge_resize():
    for n_in, n_out in ((48, 50), (64, 70), (800, 819), (1000, 1024), (7, 3)):
        ids = np.arange(n_in, dtype=np.int32)[None, :]
        np.testing.assert_array_equal(merge.nearest_index(n_in, n_out), _resize_ids(ids, (1, n_out))[0])


@pytest.mark.parametrize("h4,w4,h,w", [(200, 267, 800, 1066), (12, 16, 48, 64), (7, 9, 29, 35)])
def test_bilinear_at_matches_f_interpolate(h4, w4, h, w):
    torch.manual_seed(0)
    m = torch.randn(4, h4, w4) * 5
    full = F.interpolate(m[None], size=(h, w), mode="bilinear").squeeze(0)     # as the merge does it
    rng = np.random.default_rng(1)
    ys, xs = rng.integers(0, h, 500), rng.integers(0, w, 500)
    ys[:2], xs[:2] = (0, h - 1), (0, w - 1)                                    # the clamped corners
    np.testing.assert_allclose(pixel.bilinear_at(m, (h, w), ys, xs), full[:, ys, xs].numpy(), atol=1e-5)


def test_pixel_report_agrees_with_the_merge_everywhere(synthetic):
    tr, r = synthetic
    Ht, Wt = r.target_size
    for y in range(0, Ht, 3):
        for x in range(0, Wt, 3):
            rep = pixel.pixel_report(tr, r, x, y)
            px, py = rep.processed_xy
            assert rep.exact
            assert rep.first == r.winner_before_merge[py, px]
            assert rep.after_merge == r.winner_after_merge[py, px]
            assert rep.final == r.winner_final[py, px] == r.query_map[y, x]
            assert rep.segment["id"] == r.id_map[y, x]
            assert sum(row["p (all kept)"] for row in rep.rows) == pytest.approx(1.0)
            assert [row["query"] for row in rep.rows] == [0, 1, 2, 3]
            assert np.isnan(rep.rows[2]["p (survivors)"])                  # the dropped duplicate


def test_pixel_report_explains_a_duplicate_pixel(synthetic):
    tr, r = synthetic
    ys, xs = np.nonzero(r.winner_before_merge == 2)                        # the duplicate tree's pixels
    Ht, Wt = r.target_size
    h, w = r.processed_size
    xi, yi = merge.nearest_index(w, Wt), merge.nearest_index(h, Ht)
    tx = next(x for x in range(Wt) if xi[x] in set(xs.tolist()))
    ty = next(y for y in range(Ht) if yi[y] in set(ys[xs == xi[tx]].tolist()))
    rep = pixel.pixel_report(tr, r, tx, ty)
    assert rep.first == 2 and rep.after_merge == 1
    text = "\n".join(rep.steps)
    assert "Stuff merge" in text and "relabelled to the first one, query 1" in text
    assert "query 2 (tree-merged) is gone" in text


def test_fate_of_dropped_is_the_argmax_over_the_survivors(synthetic):
    tr, r = synthetic
    fate = merge.fate_of_dropped(r)
    assert len(fate) == 1 and fate[0]["query"] == 2
    own = r.winner_before_merge == 2
    assert fate[0]["won_first_pass"] == int(own.sum()) > 0
    big = F.interpolate(tr["pred_masks"][:, [0, 1, 3]], size=r.processed_size, mode="bilinear")[0]
    expected = np.array([0, 1, 3])[big.argmax(0).numpy()][own]
    assert dict(fate[0]["went_to"]) == {int(q): int((expected == q).sum()) for q in np.unique(expected)}
    moved = merge.reassignments(r.winner_before_merge, r.winner_after_merge)
    assert moved == [{"from": 2, "to": 1, "pixels": int(own.sum())}]


def test_quarter_map_and_confidence(synthetic):
    tr, r = synthetic
    qm = merge.quarter_map(tr, r)
    assert qm.owner.shape == (12, 16) and set(np.unique(qm.owner)) <= {0, 1, 3}
    assert 0.8 < qm.agreement <= 1.0
    conf = merge.confidence_map(tr, r)
    assert conf.shape == (12, 16) and (conf >= 1 / 4 - 1e-6).all() and (conf <= 1).all()


def test_filter_rows_state_the_strict_threshold(synthetic):
    tr, r = synthetic
    rows = {row["query"]: row for row in merge.filter_rows(r, tr.categories)}
    assert rows[4]["kept"] is False and "no object" in rows[4]["what happens"]
    assert rows[5]["kept"] is False and "is not > 0.85" in rows[5]["what happens"]
    assert "dropped" in rows[2]["what happens"] and "segment" in rows[0]["what happens"]
    # a score exactly at the threshold is not kept
    at = float(r.scores[3])
    r2 = postprocess_panoptic({"pred_logits": tr["pred_logits"], "pred_masks": tr["pred_masks"]}, (48, 64),
                              threshold=at, categories=tr.categories)
    row3 = next(x for x in merge.filter_rows(r2, tr.categories) if x["query"] == 3)
    assert row3["kept"] is False and "is not >" in row3["what happens"]


def test_query_colors_legend_and_pictures(synthetic):
    tr, r = synthetic
    colors = merge.query_colors(r, tr.categories)
    assert set(colors) == {0, 1, 2, 3}
    assert colors[2] != colors[1]                                        # the duplicate stays visible
    assert colors[0] == tuple(r.segment_of_query(0)["color"])
    legend = merge.legend_rows(r)
    assert [x["query"] for x in legend] == [0, 1, 3] and sum(x["area (px)"] for x in legend) == 50 * 70
    pic = merge.owner_picture(r.winner_before_merge, colors, 320)
    assert pic.size == (320, 240)
    arr = np.asarray(merge.changed_picture(r.winner_before_merge, r.winner_after_merge, colors, 320))
    assert (arr == np.array(colors[1], np.uint8)).all(-1).any()          # moved pixels in the new owner's colour
    assert merge.query_legend(r, tr.categories, colors).width == 720


def test_nothing_kept_gives_a_plain_message(synthetic):
    tr, _ = synthetic
    r = postprocess_panoptic({"pred_logits": tr["pred_logits"], "pred_masks": tr["pred_masks"]}, (48, 64),
                             threshold=0.99999, categories=tr.categories)
    rep = pixel.pixel_report(tr, r, 3, 3)
    assert rep.rows == [] and "Lower the threshold" in rep.steps[0]


def test_merge_on_the_traced_tiny_model(t):
    r = t.panoptic
    assert r.stuff_merges[0]["queries"] == [4, 6] and r.dropped[0]["query"] == 6
    rep = pixel.pixel_report(t, r, 5, 5)
    assert [row["query"] for row in rep.rows] == [0, 3, 4, 6, 8]
    assert rep.final == r.query_map[5, 5]


# ---------------------------------------------------------------------------------------------
# the "All tensors" page
# ---------------------------------------------------------------------------------------------
def test_summary_filter(t):
    rows = tensors.summary(t)
    assert tensors.filter_rows(rows) == rows
    attn = tensors.filter_rows(rows, "self_attn")
    assert attn and all("self_attn" in r["stage"] for r in attn)
    only6 = tensors.filter_rows(rows, "", [6])
    assert {r["step"] for r in only6} == {6}
    assert [r["stage"] for r in tensors.filter_rows(rows, "MASK_HEAD fpn2")] == ["mask_head.fpn2"]
    # rebuilt stages get real statistics, equal to the rebuilt tensor's
    fpn2 = next(r for r in rows if r["stage"] == "mask_head.fpn2")
    assert "rebuilt" in fpn2["dtype"] and "mask_head.fpn2" not in t.tensors
    assert fpn2["max"] == pytest.approx(float(t["mask_head.fpn2"].max()))
    relu = next(r for r in rows if r["stage"] == "mask_head.relu1")
    assert relu["min"] == 0.0 and "mask_head.relu1" not in t.tensors          # not kept in memory
    lazy = {r["stage"]: r for r in tensors.summary(t, derived=False)}
    assert lazy["mask_head.fpn2"]["max"] != lazy["mask_head.fpn2"]["max"]       # NaN: not computed


def test_previews_for_every_stage_and_figures(t):
    for name in t.names():
        img, caption = tensors.stage_preview(t, name, 3)
        assert img.width > 50 and img.height > 10 and name.split(".")[0] in caption
    for name in tensors.figure_names(t):
        assert tensors.figure(t, t.panoptic, name, 3).width > 100
    png = tensors.png_bytes(Image.new("RGB", (4, 4)))
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_npz_and_npy_downloads(t):
    data = tensors.npz_bytes(t)
    with np.load(io.BytesIO(data)) as z:
        assert "mask_head.fpn1" in z.files and "pred_masks" in z.files
        np.testing.assert_array_equal(z["mask_queries"], t.mask_queries)
        np.testing.assert_array_equal(z["input_proj"], t["input_proj"].numpy())
    arr = np.load(io.BytesIO(tensors.stage_npy_bytes(t, "mask_head.concat")))
    np.testing.assert_array_equal(arr, t["mask_head.concat"].numpy())
    assert tensors.trace_megabytes(t) > len(data) / 1e6 * 0.5
    assert tensors.safe_name("Panoptic map (page 7)") == "Panoptic_map_page_7"


def test_pixel_charts_and_marks(synthetic):
    tr, r = synthetic
    colors = merge.query_colors(r, tr.categories)
    rep = pixel.pixel_report(tr, r, 10, 40)
    logit, prob = pixel.pixel_charts(rep, colors)
    spec = logit.to_dict()
    assert spec["encoding"]["color"]["scale"]["range"] == [merge.hex_color(colors[q]) for q in (0, 1, 2, 3)]
    data = spec["datasets"][spec["data"]["name"]]
    assert [row["mask logit"] for row in data] == [row["mask logit"] for row in rep.rows]
    assert prob.to_dict()["encoding"]["x"]["scale"]["domain"] == [0, 1]
    img = Image.new("RGB", (100, 80), (0, 128, 0))
    marked = np.asarray(pixel.mark_point(img, (50, 40)))
    assert (marked[40, 50] == 255).all() and (marked[0, 0] == (0, 128, 0)).all()


def test_display_overlay_and_click_mapping(synthetic):
    tr, r = synthetic
    photo = Image.new("RGB", (70, 50), (200, 200, 200))                 # the target size of `r`
    assert merge.display_overlay(photo, r, 1440).size == (70, 50)       # small photos stay as they are
    big = Image.new("RGB", (3000, 2000))
    assert merge.display_overlay(big, r, 1440).size == (1440, 960)
    for xy in [(0, 0), (69, 49), (35, 20)]:
        d = pixel.photo_to_display(xy, (70, 50), (140, 100))
        assert pixel.display_to_photo(d, (140, 100), (70, 50)) == xy
    assert pixel.display_to_photo((1439, 959), (1440, 960), (3000, 2000)) == (2997, 1997)


def test_declared_caches_are_bounded_lrus():
    """A @cached function keeps its `keep` most recent values per trace (its own LRU group); merged
    keeps MERGES_KEEP thresholds and serves the trace's own merge at its own threshold."""
    from types import SimpleNamespace

    from detr_viz.cache import DerivedCache, cached
    calls = []

    @cached(keep=3)
    def tens(trace, k):
        calls.append(k)
        return k * 10

    t = SimpleNamespace(derived=DerivedCache())
    assert [tens(t, k) for k in [1, 2, 3, 1, 4, 5]] == [10, 20, 30, 10, 40, 50]
    assert calls == [1, 2, 3, 4, 5]                                        # 1 was reused
    assert tens(t, 1) == 10 and tens(t, 5) == 50 and calls == [1, 2, 3, 4, 5]
    tens(t, 2)                                                             # 2 and 3 were evicted
    assert calls[-1] == 2 and len(calls) == 6

    @cached(keep=4)
    def pic(trace, q):
        calls.append(("pic", q))
        return q

    @cached
    def other(trace):
        return "x"

    t, calls = SimpleNamespace(derived=DerivedCache()), []
    for q in range(6):
        assert pic(t, q) == q
    assert other(t) == "x"                                                 # its own group
    assert pic(t, 5) == 5 and calls == [("pic", q) for q in range(6)]      # cached: not called again
    assert len(t.derived) == 4 + 1
    pic(t, 1)                                                              # evicted: made again
    assert calls[-1] == ("pic", 1)

    merges = []
    t = SimpleNamespace(threshold=0.85, panoptic="own", merge=lambda thr: merges.append(thr) or f"at {thr}",
                        derived=DerivedCache())
    assert merge.merged(t, 0.85) == "own" and merges == []                # the trace's own merge
    thresholds = [round(0.1 + i / 100, 2) for i in range(merge.MERGES_KEEP + 3)]
    for thr in thresholds:
        merge.merged(t, thr)
    assert len(t.derived) == merge.MERGES_KEEP and merges == thresholds
    assert merge.merged(t, thresholds[-1]) == f"at {thresholds[-1]}" and len(merges) == len(thresholds)   # reused
    merge.merged(t, thresholds[0])                                         # evicted: merged again
    assert merges[-1] == thresholds[0] and len(merges) == len(thresholds) + 1
