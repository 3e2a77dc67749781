"""detr_viz.explain for the Home page and steps 1-4: live sizes, grid geometry, the pipeline
diagram, and the live checks each page shows (they must find the traced tensors consistent)."""
import math
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch
from conftest import confident_model
from PIL import Image

import detr_viz
from detr_viz import explain
from detr_viz.explain import home
from detr_viz.explain import step1_backbone as bb
from detr_viz.explain import step2_encoder as enc
from detr_viz.explain import step3_decoder as dec
from detr_viz.explain import step4_box_attention as att
from detr_viz.testing import CONFIDENT
from detr_viz.viz import pca, table_grid


@pytest.fixture(scope="module")
def t():
    """A 160 x 120 photo: resized to 1066 x 800, a 25 x 34 grid whose last column is cut."""
    rng = np.random.default_rng(0)
    img = Image.fromarray((rng.random((120, 160, 3)) * 255).astype(np.uint8))
    return detr_viz.trace(confident_model(), img)


def test_dims_are_the_live_sizes(t):
    D = explain.dims(t)
    assert (D.H0, D.W0, D.H, D.W) == (120, 160, 800, 1066)
    assert (D.h, D.w) == (math.ceil(800 / 32), math.ceil(1066 / 32)) == t.grid
    assert (D.d, D.M, D.N, D.dh) == (t.config.hidden_dim, t.config.nheads, t.config.num_queries, 16)
    assert D.hw == 25 * 34 and D.C5 == t.shape("backbone.res5")[1]
    assert explain.shape_str((1, 2048, 25, 34)) == "1 x 2048 x 25 x 34"


def test_cell_of_pixel_follows_the_stride_not_a_stretched_grid(t):
    D = explain.dims(t)
    assert explain.cell_of_pixel(t, 0, 0) == (0, 0)
    assert explain.cell_of_pixel(t, D.W0 - 1, D.H0 - 1) == (D.h - 1, D.w - 1)
    # network-input pixel 1055 is in cell 32 (1024..1055), 1056 in the cut last cell 33
    assert explain.cell_of_pixel(t, 1055, 0, (D.W, D.H)) == (0, 32)
    assert explain.cell_of_pixel(t, 1056, 0, (D.W, D.H)) == (0, 33)
    # a stretched grid would put pixel 1023 in cell 32 (1023 * 34 / 1066 = 32.6): the stride puts it in 31
    assert explain.cell_of_pixel(t, 1023, 0, (D.W, D.H)) == (0, 31)
    for cell in [(0, 0), (3, 7), (D.h - 1, D.w - 1), (12, 33)]:
        x0, y0, x1, y1 = explain.cell_rect(t, cell, (720, 540))
        assert x1 > x0 and y1 > y0 and x1 <= 720 + 1e-9 and y1 <= 540 + 1e-9
        assert explain.cell_of_pixel(t, (x0 + x1) / 2, (y0 + y1) / 2, (720, 540)) == cell
    assert explain.cell_index(t, (2, 5)) == 2 * D.w + 5


def test_grid_picture_puts_every_cell_where_cell_rect_says(t):
    D = explain.dims(t)
    values = np.arange(D.hw, dtype=np.float32).reshape(D.h, D.w)
    rgb = np.stack([values % 256, values // 256, np.zeros_like(values)], -1).astype(np.uint8)   # unique colours
    pic = explain.grid_to_picture(t, rgb, (700, 525))
    assert pic.size == (700, 525)
    arr = np.asarray(pic)
    for cell in [(0, 0), (10, 20), (D.h - 1, D.w - 1), (5, D.w - 1)]:
        x0, y0, x1, y1 = explain.cell_rect(t, cell, pic.size)
        px = arr[int((y0 + y1) / 2), int((x0 + x1) / 2)]
        assert tuple(px) == tuple(rgb[cell])
    over = explain.grid_overlay(t, values, explain.display_image(t, 300))
    assert over.size == explain.display_image(t, 300).size


def test_table_grid_layout_turns_clicks_into_tiles():
    tiles = [[Image.new("RGB", (40, 30), (r * 50, c * 30, 0)) for c in range(5)] for r in range(3)]
    pic, layout = table_grid(tiles, row_labels=["query 1", "query 22", "q3"], col_labels=list("abcde"))
    arr = np.asarray(pic)
    for r in range(3):
        for c in range(5):
            x, y = layout.tile_origin(r, c)
            assert layout.cell_at(x + 20, y + 15) == (r, c)
            assert tuple(arr[y + 15, x + 20]) == (r * 50, c * 30, 0)
    assert layout.cell_at(1, 1) is None                              # the row labels
    x, y = layout.tile_origin(0, 0)
    assert layout.cell_at(x + 41, y + 5) is None                     # the padding between tiles


def test_fast_pca_matches_a_full_svd():
    rng = np.random.default_rng(3)
    f = (rng.standard_normal((300, 4)) @ rng.standard_normal((4, 200)) * 3
         + rng.standard_normal((300, 200))).astype(np.float32).reshape(300, 10, 20)
    pcs, share = pca(f, 3)
    x = f.reshape(300, -1).T.astype(np.float64)
    x -= x.mean(0)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    ref = x @ vt[:3].T
    for i in range(3):
        assert abs(np.corrcoef(ref[:, i], pcs[:, i])[0, 1]) > 0.999
    assert share == pytest.approx((s[:3] ** 2).sum() / (s ** 2).sum(), rel=1e-6)
    again, _ = pca(f, 3)
    assert np.array_equal(pcs, again)                                # deterministic


# ---- home -----------------------------------------------------------------------------------------
def test_pipeline_svg_has_live_shapes_and_links(t):
    links = {k: f"/page{k}?image=photo%3Ax.jpg&model=m" for k in range(1, 9)}
    svg = home.pipeline_svg(t, links)
    root = ET.fromstring(svg)                                        # well-formed XML
    text = " ".join(root.itertext())
    D = explain.dims(t)
    assert explain.shape_str(t.shape("backbone.res5")[1:]) in text   # e.g. 512 x 25 x 34
    assert f"{D.d} x {D.h} x {D.w}" in text                          # encoded image
    assert f"{D.d} x {D.N}" in text                                  # box embeddings, d x N
    assert f"{D.N} x {D.M} x {D.h} x {D.w}" in text                  # the maps
    assert f"{D.N} x {D.d + D.M} x {D.h} x {D.w}" in text            # the concat
    assert f"3 x {D.H} x {D.W}" in text and f"{D.H0} x {D.W0}" in text
    anchors = [a for a in root.iter() if a.tag.endswith("}a") or a.tag == "a"]
    hrefs = {a.get("href") for a in anchors}
    assert set(links.values()) <= hrefs
    assert all(a.get("target") == "_self" for a in anchors)
    assert "&amp;" in svg                                             # hrefs escaped


def test_pipeline_svg_without_links_has_no_anchors(t):
    assert "<a " not in home.pipeline_svg(t)


def test_timings(t):
    rows = home.timing_rows(t)
    assert [r["block"] for r in rows][0] == "CNN backbone"
    assert sum(r["seconds"] for r in rows) == pytest.approx(t.total_time)
    assert sum(r["share"] for r in rows) == pytest.approx(1.0)
    fig = home.timings_figure(t)
    assert len(fig.data[0].y) == len(rows)


# ---- step 1 ---------------------------------------------------------------------------------------
def test_backbone_input_and_checks(t):
    info = bb.input_info(t)
    assert info["original"] == (120, 160) and info["processed"] == (800, 1066)
    assert info["min"] < 0 < info["max"] and info["padding_pixels"] == 0
    assert bb.denormalized(t).size == (1066, 800)
    assert bb.denormalize_check(t) <= 1
    assert bb.input_proj_check(t) < 1e-4
    pj = bb.input_proj_info(t.model)
    D = explain.dims(t)
    assert pj["weight"] == (D.d, D.C5, 1, 1) and pj["parameters"] == D.d * D.C5 + D.d


def test_backbone_levels(t):
    names = bb.level_names(t)
    assert names == ["backbone.res2", "backbone.res3", "backbone.res4", "backbone.res5"]
    rows = bb.levels(t)
    assert [r["stride"] for r in rows] == [4, 8, 16, 32]
    for r in rows:
        assert r["height"] == math.ceil(800 / r["stride"]) and r["width"] == math.ceil(1066 / r["stride"])
        assert 0 <= r["zeros"] <= 1
    top = bb.most_active(t, "backbone.res3", 8)
    means = t["backbone.res3"][0].mean((1, 2))
    assert means[top[0]] == means.max() and list(means[top].numpy()) == sorted(means[top].numpy(), reverse=True)
    alone, over = bb.channel_picture(t, "backbone.res3", top[0], 400)
    assert alone.size == over.size == explain.display_image(t, 400).size
    pic, share = bb.pca_picture(t, "input_proj", 400)
    assert pic.size == (400, 300) and 0 < share <= 1


# ---- step 2 ---------------------------------------------------------------------------------------
def test_memory_is_the_last_encoder_layer(t):
    chk = enc.memory_check(t)
    assert chk["last_layer_diff"] == 0.0
    assert chk["changed_from_input"] > 0


def test_position_encoding_formula_matches_the_trace(t):
    assert enc.position_check(t) < 1e-5
    chans = enc.position_channels(t)
    half = explain.dims(t).d // 2
    assert [c for _, c in chans if _.startswith("y")][0] == 0 and [c for _, c in chans if _.startswith("x")][0] == half
    assert enc.position_frequency(t, 0) == 1.0 and enc.position_frequency(t, 2) < 1.0


def test_cell_attention_is_a_softmax_per_head(t):
    D = explain.dims(t)
    maps = enc.cell_attention(t, 0, (3, 4))
    assert maps.shape == (D.M, D.h, D.w)
    np.testing.assert_allclose(maps.reshape(D.M, -1).sum(1), 1.0, atol=1e-5)
    full = t.encoder_attention(0)[0, :, explain.cell_index(t, (3, 4))]      # (M, hw)
    np.testing.assert_allclose(maps.reshape(D.M, -1), full.numpy(), atol=1e-7)
    s = enc.attention_summary(maps.mean(0), (3, 4))
    assert s["sum"] == pytest.approx(1.0, abs=1e-5) and 1 <= s["effective_cells"] <= D.hw
    assert s["top"][0][2] == pytest.approx(maps.mean(0).max())
    assert enc.heads_grid(t, maps, (3, 4), 400).width <= 400


# ---- step 3 ---------------------------------------------------------------------------------------
def test_query_rows_and_kept_boxes(t):
    rows = dec.query_rows(t, t.panoptic)
    assert len(rows) == t.config.num_queries
    assert {r["query"] for r in rows if r["kept"]} == set(CONFIDENT)
    assert all(r["kind"] == ("thing" if CONFIDENT[r["query"]] <= 90 else "stuff") for r in rows if r["kept"])
    assert dec.kept_boxes_picture(t, t.panoptic, 300).size == explain.display_image(t, 300).size
    lower = t.merge(0.5)
    assert sum(r["kept"] for r in dec.query_rows(t, lower)) == len(CONFIDENT) + 1   # the unsure person


def test_layer_views_of_one_query(t):
    L = t.config.dec_layers
    series = dec.layer_probs(t, 0, top=3)
    assert "person" in series and "no object" in series and all(len(v) == L for v in series.values())
    assert series["person"][-1] == pytest.approx(float(t["pred_logits"][0, 0].softmax(-1)[1]), abs=1e-6)
    assert len(dec.layer_table(t, 0)) == L
    assert dec.layer_boxes_picture(t, 0, 300).size == explain.display_image(t, 300).size
    chk = dec.embedding_check(t)
    assert chk["logits_diff"] < 1e-4 and chk["boxes_diff"] < 1e-5


def test_cross_attention_maps(t):
    D = explain.dims(t)
    maps = dec.cross_attention(t, D.dec_layers - 1, 3)
    assert maps.shape == (D.M, D.h, D.w)
    np.testing.assert_allclose(maps.reshape(D.M, -1).sum(1), 1.0, atol=1e-5)


# ---- step 4 ---------------------------------------------------------------------------------------
def test_box_attention_recomputed_step_by_step_matches_the_trace(t):
    rec = att.recompute(t)
    D = explain.dims(t)
    assert rec["q"].shape == (D.N, D.d) and rec["k"].shape == (D.d, D.h, D.w)
    assert rec["q_diff"] < 1e-5 and rec["maps_diff"] < 1e-6
    assert rec["scale"] == pytest.approx(1 / math.sqrt(D.dh))
    assert att.per_head_softmax_sum(rec, 0) == pytest.approx(D.M, rel=1e-5)


def test_box_attention_maps_of_a_query_sum_to_one_together(t):
    queries = [0, 3, 8]
    shares = att.head_shares(t, queries)
    np.testing.assert_allclose(shares.sum(1), 1.0, atol=1e-5)
    assert (shares < 0.999).all()                                   # no head alone holds the query's budget
    rows = att.sum_rows(t, queries, ["a", "b", "c"])
    assert [r["class"] for r in rows] == ["a", "b", "c"]
    assert all(abs(r["sum of its M maps"] - 1) < 1e-5 for r in rows)


def test_box_attention_grid_and_large_map(t):
    D = explain.dims(t)
    pic, layout = att.maps_grid(t, [0, 3], ["0 person", "3 person"], 800, "query")
    assert (layout.nrows, layout.ncols) == (2, D.M)
    x, y = layout.tile_origin(1, 5)
    assert layout.cell_at(x + 2, y + 2) == (1, 5)
    assert pic.width <= 800 + 8
    s = att.map_summary(t, 3, None)
    assert s["share"] == pytest.approx(1.0, abs=1e-5)
    one = att.map_summary(t, 3, 2)
    assert one["share"] == pytest.approx(float(att.head_shares(t, [3])[0, 2]), abs=1e-6)
    assert att.map_picture(t, 3, 2, 300).size == explain.display_image(t, 300).size


def test_formula_latex_has_the_live_sizes(t):
    D = explain.dims(t)
    text = " ".join(c + x for c, x in att.formula_latex(t))
    assert f"{D.M * D.hw}" in text and f"\\sqrt{{{D.dh}}}" in text
    assert f"{D.N} \\times {D.M} \\times {D.h} \\times {D.w}" in text


def test_box_cell_of_the_centre(t):
    box = torch.tensor([0.5, 0.5, 0.2, 0.2])
    D = explain.dims(t)
    r, c = explain.box_cell(t, box)
    assert abs(r - D.h / 2) <= 1 and abs(c - 1066 / 2 / 32) <= 1


def test_box_cell_takes_the_centre_as_a_fraction_of_the_network_input(t):
    """Box centre (cx, cy) is input pixel (cx * W, cy * H), in cell (cy * H // s, cx * W // s).
    The 160 x 120 photo enters as 1066 x 800 (grid 25 x 34, stride 32)."""
    # 64.2 input pixels in: cell 2. (The old cx * (W0 - 1) put it at 63.8 px, cell 1.)
    assert explain.box_cell(t, torch.tensor([64.2 / 1066, 64.2 / 800, 0.1, 0.1])) == (2, 2)
    # the centre: pixel 533 of 1066 is in cell 16 (a stretched grid, floor(0.5 * 34), would say 17)
    assert explain.box_cell(t, torch.tensor([0.5, 0.5, 0.1, 0.1])) == (12, 16)
    # the far edge is the last, cut cell; out-of-range centres are clamped
    assert explain.box_cell(t, torch.tensor([1.0, 1.0, 0.1, 0.1])) == (24, 33)
    assert explain.box_cell(t, torch.tensor([-0.2, 1.3, 0.1, 0.1])) == (24, 0)


def test_class_examples_come_from_the_models_categories():
    from detr_viz.categories import get_categories
    from detr_viz.explain.step3_decoder import class_examples
    coco, toy = get_categories("coco", 250), get_categories("toyworld", 8)
    assert class_examples(coco, True) == ["person", "car"]
    assert class_examples(coco, False) == ["sky-other-merged", "grass-merged"]
    assert class_examples(toy, True) == ["circle", "square"] and class_examples(toy, False) == ["sky", "grass"]


def test_size_at_width_keeps_thin_strips_drawable():
    from detr_viz.viz import MAX_ASPECT, size_at_width
    assert size_at_width((600, 800), 400) == (400, 300)
    w, h = size_at_width((3000, 1), 720)                     # a 1-pixel-wide, 3000-pixel-high strip
    assert h == MAX_ASPECT * 720 and w >= 1
    assert size_at_width((1, 4000), 720) == (720, 1)         # at least one pixel high
