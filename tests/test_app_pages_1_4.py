"""Pages 1-4 in AppTest with the tiny random model: each runs opened directly and after Home,
answers its step with live numbers, and its interactions (level and channel, click on the photo,
threshold, click on the grid of maps) change what is shown."""

import numpy as np
import pytest
from app_helpers import app, assert_clean, session_trace, texts

from detr_viz.explain import step4_box_attention as att
from detr_viz.explain.common import dims
from ui import page, state

PAGES = {1: "pages/1_Backbone.py", 2: "pages/2_Encoder.py", 3: "pages/3_Decoder.py", 4: "pages/4_Box_attention.py"}


@pytest.fixture(autouse=True)
def tiny_model_app(monkeypatch):
    monkeypatch.setenv(state.APP_MODEL_ENV, state.TINY_RANDOM)


def shapes_table(at):
    return next(df.value for df in at.dataframe if list(df.value.columns) == ["stage", "shape", "what it is"])


@pytest.mark.parametrize("step", [1, 2, 3, 4])
def test_page_opened_directly_with_no_prior_state(step):
    at = app(PAGES[step]).run()
    assert_clean(at)
    assert any(c.value == f"Step {step} of 7" for c in at.caption)
    table = shapes_table(at)
    assert len(table) >= 2 and all(" x " in s or s.isdigit() for s in table["shape"])
    nav = " ".join(m.value for m in at.markdown)
    assert ("← " in nav) and ("→" in nav)                     # previous / next links
    assert at.session_state[state.K_IMAGE_NAME] == "nagasaki_boats.jpg"


def test_pages_after_home_render_fast_and_clean():
    at = app().run()
    for step, path in PAGES.items():
        at.switch_page(path).run()       # page times: benchmarks/app_bench.py (not timed in tests)
        assert_clean(at)
        assert any(c.value == f"Step {step} of 7" for c in at.caption)


def test_backbone_page_answers_with_live_numbers_and_level_and_channel_change():
    at = app(PAGES[1]).run()
    body = texts(at)
    assert "1024 x 819" in body and "1000 x 800" in body and "1 x 3 x 800 x 1000" in body
    assert "65,664 parameters" in body                        # 128 x 512 + 128: the tiny model's input_proj
    assert "512 x 25 x 32 -> 128 x 25 x 32" in body
    level = at.session_state["bb_level"]
    assert level == "backbone.res5"
    at.segmented_control(key="bb_level").set_value("backbone.res2").run()
    assert_clean(at)
    assert "16 channels of **Res2**" in texts(at)
    at.number_input(key="bb_channel_backbone.res2").set_value(7).run()
    assert_clean(at)
    assert any(c.value.startswith("Res2, channel 7:") for c in at.caption)


def test_encoder_page_answers_where_the_encoded_image_comes_from():
    at = app(PAGES[2]).run()
    answer = at.success[0].value
    assert "`memory`" in answer and "**128 x 25 x 32**" in answer and "input_proj(Res5)" in answer
    assert "largest difference 0.0e+00" in answer               # memory IS the last layer's output


def test_encoder_click_changes_the_attention_shown():
    at = app(PAGES[2]).run()
    before_caption = next(c.value for c in at.caption if "cell row" in c.value)
    before = next(m.value for m in at.markdown if "average of the" in m.value)
    assert before_caption.startswith("Not clicked yet")
    # a click near the top-left corner of the shown photo (720 x 576 for the 1024 x 819 sample)
    at.session_state["enc_click"] = {"x": 5, "y": 5, "width": 720, "height": 576, "unix_time": 1}
    at.run()
    assert_clean(at)
    after_caption = next(c.value for c in at.caption if "cell row" in c.value)
    assert after_caption.startswith("Clicked cell row 0, column 0")
    after = next(m.value for m in at.markdown if "average of the" in m.value)
    assert after != before
    # each head, on the same cell
    at.segmented_control(key="enc_heads").set_value("each head").run()
    assert_clean(at)
    assert any("each head" in m.value and "sums to 1" in m.value for m in at.markdown)


def test_decoder_threshold_slider_changes_the_kept_set():
    at = app().run().switch_page(PAGES[3]).run()
    assert_clean(at)
    kept = lambda: next(m.value for m in at.markdown if "queries are kept" in m.value)   # noqa: E731
    assert kept().startswith("**5 of the 10 queries are kept**")
    table = next(df.value for df in at.dataframe if "kept" in df.value.columns)
    assert set(table[table["kept"]]["query"]) == {0, 3, 4, 6, 8}
    at.slider(key="threshold_widget").set_value(0.5).run()
    assert_clean(at)
    assert kept().startswith("**6 of the 10 queries are kept**")
    table = next(df.value for df in at.dataframe if "kept" in df.value.columns)
    assert set(table[table["kept"]]["query"]) == {0, 1, 3, 4, 6, 8}
    assert at.session_state[state.K_THRESHOLD] == 0.5          # shared with the other pages
    at.switch_page(PAGES[4]).run()
    assert "6 kept queries" in texts(at)


def test_decoder_query_and_layer_views():
    at = app(PAGES[3]).run()
    at.selectbox(key="dec_query").set_value(8).run()
    assert_clean(at)
    assert any("query 8 make up its mind" in m.value for m in at.markdown)
    at.selectbox(key="dec_layer").set_value(0).run()
    at.segmented_control(key="dec_heads").set_value("each head").run()
    assert_clean(at)
    assert any(c.value.startswith("Layer 1: the 8 heads of query 8") for c in at.caption)


def test_box_attention_page_answers_and_verifies_the_sums():
    at = app(PAGES[4]).run()
    assert_clean(at)
    assert "without values and without an output projection" in at.success[0].value
    assert "**10 x 8 x 25 x 32**" in at.success[0].value
    assert len(at.latex) >= 4 and any("6400" in x.value or "sqrt{16}" in x.value for x in at.latex)
    sums = next(df.value for df in at.dataframe if "sum of its M maps" in df.value.columns)
    assert len(sums) == 5
    np.testing.assert_allclose(sums["sum of its M maps"], 1.0, atol=1e-5)
    heads = sums[[f"head {m + 1}" for m in range(8)]].to_numpy()
    assert (heads.max(1) < 0.99).all()                         # heads share one budget
    assert "to within" in texts(at)


def test_box_attention_grid_click_selects_query_and_head():
    at = app(PAGES[4]).run()
    assert at.session_state["att_query"] == 8                   # the most confident kept query first
    assert at.session_state["att_head"] is None
    t = session_trace(at)
    kept = sorted(t.panoptic.kept.tolist(), key=lambda q: -t.panoptic.scores[q])      # the rows, at 0.85
    misses = t.derived.misses
    pic, layout = att.maps_grid(t, kept, att.row_labels(t, kept), 2 * page.DISPLAY_WIDTH, "query")   # shown
    assert t.derived.misses == misses, "the page did not cache its grid under the library function's key"
    queries = kept
    x, y = layout.tile_origin(2, 5)                            # third row, head 6
    at.session_state["att_grid_click"] = {"x": x + 3, "y": y + 3, "width": pic.width, "height": pic.height,
                                          "unix_time": 123}
    at.run()
    assert_clean(at)
    assert at.session_state["att_query"] == queries[2]
    assert at.session_state["att_head"] == 5
    assert any(m.value.startswith(f"**Query {queries[2]}, head 6.**") for m in at.markdown)
    # the selection stays on later reruns, and the boxes can still change it
    at.selectbox(key="att_head").set_value(1).run()
    assert at.session_state["att_head"] == 1


def test_pages_use_the_image_of_the_session():
    at = app().run()
    at.selectbox(key="sample_widget").set_value("photo:china.jpg").run()
    at.switch_page(PAGES[2]).run()
    assert_clean(at)
    D = dims(session_trace(at))
    assert (D.H0, D.W0) == (427, 640)
    assert f"**{D.d} x {D.h} x {D.w}**" in at.success[0].value
    assert any("danielbuechele" in c.value for c in at.sidebar.caption)     # the CC BY credit on every page
