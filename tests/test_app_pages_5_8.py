"""Pages 5-8 in AppTest with the tiny random model, each opened directly (a deep link on a fresh
server: no prior session state). Tiny model: queries 0, 3 person, 4 and 6 tree-merged (a duplicate
stuff merge), 8 sky; query 1 person at about 0.6."""
import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from detr_viz import samples
from detr_viz.stages import STEPS, stage_names
from detr_viz.testing import TINY, make_confident, tiny_model

REPO = Path(__file__).resolve().parents[1]
P5, P6, P7, P8 = ("pages/5_Concat_Res5.py", "pages/6_Upsampling.py", "pages/7_Merge.py", "pages/8_All_tensors.py")
TIMEOUT = 240          # the first page run traces the model (a few seconds on 2 busy cores)


@pytest.fixture(autouse=True)
def tiny_app_model(monkeypatch):
    monkeypatch.setenv("DETR_VIZ_APP_MODEL", "tiny-random")


def open_page(path: str) -> AppTest:
    at = AppTest.from_file(str(REPO / path), default_timeout=TIMEOUT)
    at.run()
    return at


def app_trace():
    """The trace the pages used (the app's shared trace store, keyed by model and image hash)."""
    from ui import state
    key = (state.TINY_RANDOM, hashlib.sha1(samples.default_sample().read_bytes()).hexdigest())
    t = state.trace_store().get(key)
    assert t is not None
    return t


def no_errors(at: AppTest):
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def markdown(at: AppTest) -> str:
    return "\n".join(m.value for m in at.markdown)


def frame_with(at: AppTest, column: str):
    frames = [d.value for d in at.dataframe if column in getattr(d.value, "columns", [])]
    assert frames, f"no table with a {column!r} column"
    return frames[0]


@pytest.mark.parametrize("path,title", [(P5, STEPS[4].title), (P6, STEPS[5].title), (P7, STEPS[6].title),
                                        (P8, "All tensors")])
def test_page_opened_directly_runs_without_errors(path, title):
    at = open_page(path)
    no_errors(at)
    assert [t.value for t in at.title] == [title]
    assert len(at.subheader) >= 2 and len(at.image) >= 1


def test_page5_checks_hold_and_shapes_are_live():
    at = open_page(P5)
    no_errors(at)
    checks = frame_with(at, "holds")
    assert list(checks["holds"]) == ["✓"] * 6
    d, M = TINY.hidden_dim, TINY.nheads
    text = markdown(at)
    assert f"d = {d} channels" in text and f"**all N = {TINY.num_queries} queries**" in text
    assert not any("bbox_attention_scale" in i.value for i in at.info)    # the tiny model's maps are unscaled
    assert any(f"(K, {d + M}," in c.value for c in at.code)


def test_page5_says_when_the_maps_are_scaled(monkeypatch):
    """A model with bbox_attention_scale != 1 (small models trained from scratch): the page says so."""
    from ui import state
    scaled = make_confident(tiny_model(TINY.replace(bbox_attention_scale=5.0), seed=1))
    monkeypatch.setattr(state, "load_model", lambda key: scaled)
    rng = np.random.default_rng(58)                    # an image no other test uses: its own trace
    buf = io.BytesIO()
    Image.fromarray((rng.random((96, 128, 3)) * 255).astype(np.uint8)).save(buf, format="PNG")
    at = AppTest.from_file(str(REPO / P5), default_timeout=TIMEOUT)
    at.session_state["image_bytes"], at.session_state["image_name"] = buf.getvalue(), "scaled-test.png"
    at.run()
    no_errors(at)
    assert any("bbox_attention_scale = 5**" in i.value for i in at.info)
    assert list(frame_with(at, "holds")["holds"]) == ["✓"] * 6
    assert "bbox_mask.flatten(0, 1) * 5]" in at.code[0].value


def test_page6_channel_plan_and_fpn_sums():
    at = open_page(P6)
    no_errors(at)
    plan = frame_with(at, "channels")
    d, M = TINY.hidden_dim, TINY.nheads
    assert len(plan) == 10 and plan["channels"].iloc[0] == f"{d} + {M} = {d + M}"
    assert f"GroupNorm(8, {d + M})" in plan["operation"].iloc[1]
    text = markdown(at)
    assert text.count("max |up + adapter − fpn| = 0)") == 3
    at.radio(key="upsampling_view").set_value("one channel").run()
    no_errors(at)
    assert len(at.number_input) == 3


def test_page7_pixel_click_shows_every_kept_querys_scores():
    at = open_page(P7)
    no_errors(at)
    W, H = Image.open(samples.default_sample().path).size
    at.session_state["merge_click"] = {"x": 100, "y": 50, "width": 720, "height": round(720 * H / W)}
    at.run()
    no_errors(at)
    x, y = int(100 * W / 720), int(50 * H / round(720 * H / W))
    text = markdown(at)
    assert f"**Scores at photo pixel (x={x}, y={y})**" in text
    scores = frame_with(at, "mask logit")
    assert list(scores["query"]) == [0, 3, 4, 6, 8]
    assert scores["p (all kept)"].sum() == pytest.approx(1.0, abs=1e-6)
    owner = scores.loc[scores["role"].str.contains("final owner"), "query"]
    assert len(owner) == 1 and "**Final:** segment" in text
    assert "Showing the centre" not in "\n".join(c.value for c in at.caption)


def test_page7_shows_the_stuff_merge_of_the_duplicate_trees_and_drops_query_6():
    at = open_page(P7)
    no_errors(at)
    text = markdown(at)
    assert "*tree-merged* (stuff): kept queries 4, 6 → every pixel of 6 is relabelled to query 4" in text
    assert "**Query 6 dropped.**" in text
    dropped = frame_with(at, "why")
    assert list(dropped["query"]) == [6] and list(dropped["area (px)"]) == [0]
    assert "stuff merge" in dropped["why"].iloc[0]
    legend = frame_with(at, "area (%)")                  # the final segments
    assert list(legend["query"]) == [0, 3, 4, 8]


def test_page7_caches_its_pictures_declared_on_the_trace():
    """The Merge page's pictures live in the trace's DerivedCache, under the library functions' own
    keys (counted in bytes), not in hand-made caches attached to the trace."""
    from detr_viz.explain import step7_merge as merge
    from ui import page
    at = open_page(P7)
    no_errors(at)
    t = app_trace()
    assert t.derived.nbytes > 0
    misses = t.derived.misses
    for stage in merge.WINNER_MAPS:
        merge.owner_picture_at(t, t.threshold, stage, page.DISPLAY_WIDTH)    # drawn by the page: no new miss
    merge.display_overlay_at(t, t.threshold, 2 * page.DISPLAY_WIDTH)
    assert t.derived.misses == misses
    assert not {"_page_cache", "_merges", "_display_images"} & set(vars(t))


def test_page7_threshold_changes_the_kept_set():
    at = open_page(P7)
    assert "**Kept at 0.85: 5 of 10 queries**: 0, 3, 4, 6, 8." in markdown(at)
    at.slider(key="threshold_widget").set_value(0.5).run()
    no_errors(at)
    assert "**Kept at 0.50: 6 of 10 queries**: 0, 1, 3, 4, 6, 8." in markdown(at)
    rows = frame_with(at, "what happens").set_index("query")
    assert bool(rows.loc[1, "kept"]) is True


def test_page8_downloads_and_every_stage_in_the_table():
    at = open_page(P8)
    no_errors(at)
    labels = [b.proto.label for b in at.get("download_button")]
    for wanted in ("Panoptic map (colour PNG)", "Segments (JSON)", "The whole trace (.npz",
                   "Download the figure (PNG)", "(PNG)", ".npy"):
        assert any(wanted in lab for lab in labels), (wanted, labels)
    table = frame_with(at, "dtype")
    t = app_trace()
    assert list(table["stage"]) == t.names() == stage_names(TINY)      # every stage, in pipeline order
    at.text_input(key="tensors_search").input("cross_attn").run()
    no_errors(at)
    assert list(frame_with(at, "dtype")["stage"]) == [f"decoder.layer{i}.cross_attn" for i in range(TINY.dec_layers)]


def test_trace_nbytes_counts_its_tensors():
    import detr_viz
    t = detr_viz.trace(tiny_model(), Image.new("RGB", (64, 64)), size=64)
    assert t.nbytes == sum(v.numel() * v.element_size() for v in t.tensors.values())
    assert t.nbytes > t["backbone.res2"].numel() * 4
