"""Text true for every model: every page (Home, steps 1-7, All tensors, Questions) rendered in AppTest with
an R50-sized (stride 32) and a DC5-sized (stride 16) random model and the shipped toyworld model (stride
16), on a small toy scene. The strides and grid sizes the pages state must be the model's: no "1/32" or
"H/32" claim for a stride-16 model, no "H/16" grid for a stride-32 one (quotes of the curriculum aside).

The two random models are test-only app models: `ui.state.load_model` is patched for their keys."""
import math
import re
from functools import cache

import pytest
from app_helpers import app, assert_clean

import detr_viz
from detr_viz.config import R50_DC5_PANOPTIC, R50_PANOPTIC
from detr_viz.curriculum import ITEMS
from detr_viz.explain.step1_backbone import resize_note
from detr_viz.stages import STEPS
from detr_viz.testing import make_confident, tiny_model
from ui import page, state

SCENE = "toy:scene1.png"                     # 160 x 160: small inputs, fast traces
SMALL = dict(input_size=128, max_input_size=192, enc_layers=1, dec_layers=2, dim_feedforward=64, num_queries=12)
TEST_MODELS = {"test-r50": R50_PANOPTIC.replace(**SMALL), "test-dc5": R50_DC5_PANOPTIC.replace(**SMALL)}
QUOTES = [s.question for s in STEPS if s.question] + [i.quote for i in ITEMS] + [i.given for i in ITEMS if i.given]


@cache
def build(key: str):
    model = make_confident(tiny_model(TEST_MODELS[key], seed=0)).to(detr_viz.select_device())
    model.model_name, model.weights_source = key, "random initialisation (test mode)"
    return model


@pytest.fixture
def test_models(monkeypatch):
    real = state.load_model
    for key in TEST_MODELS:
        monkeypatch.setitem(state.RANDOM_MODELS, key, f"{key} (text test only)")
    monkeypatch.setattr(state, "load_model", lambda key: build(key) if key in TEST_MODELS else real(key))


def rendered(at) -> str:
    """Every text a student reads on the page: markdown, captions, boxes, headings, table cells."""
    parts = [e.value for kind in ("markdown", "caption", "info", "success", "warning", "title", "header",
                                  "subheader") for e in at.get(kind)]
    for df in at.dataframe:
        parts += [str(v) for v in df.value.astype(str).to_numpy().ravel()] + [str(c) for c in df.value.columns]
    text = "\n".join(parts)
    for quote in QUOTES:                     # the curriculum's own words are quoted, not claimed
        text = text.replace(quote, "")
    return text


def walk(key: str) -> dict:
    """{page path: rendered text} for every page of the menu with this model, after Home."""
    at = app(query_params={"image": SCENE}).run()
    assert_clean(at)
    out = {"app.py": rendered(at)}
    for k, (path, _) in page.PAGES.items():
        if k:
            at.switch_page(path).run()
            assert_clean(at)
            out[path] = rendered(at)
    ss = at.session_state
    out["trace"] = state.trace_store().get((ss[state.K_MODEL], state.image_hash(ss[state.K_IMAGE_BYTES])))
    return out


@pytest.mark.parametrize("key", ["test-r50", "test-dc5", "toyworld"])
def test_every_page_states_the_models_own_strides_and_grid(key, monkeypatch, test_models):
    monkeypatch.setenv(state.APP_MODEL_ENV, key)
    pages = walk(key)
    t = pages.pop("trace")
    H, W = t["input"].shape[-2:]
    h, w = t["memory"].shape[-2:]
    s = 2 ** round(math.log2(H / h))                 # read from the shapes, not the config
    assert s == (16 if key != "test-r50" else 32)
    other = 32 if s == 16 else 16
    everything = "\n".join(pages.values())
    wrong = [(p, m.group(0), text[max(0, m.start() - 80):m.end() + 40]) for p, text in pages.items()
             for m in re.finditer(rf"(?<![\d.])1/{other}\b|\b[HW]/{other}\b" if s == 16 else rf"\b[HW]/{other}\b", text)]
    assert not wrong, wrong
    assert f"H/{s} x W/{s}" in pages["app.py"] and f"H/{s} x W/{s}" in pages[page.PAGES[page.QUESTIONS][0]]
    assert f"{h} x {w}" in pages["app.py"] and f"{H}/{s} -> {h}" in pages[page.PAGES[2][0]]
    assert f"{t['bbox_attention'].shape[1]} x {t['bbox_attention'].shape[2]} x {h} x {w}" in pages[page.PAGES[4][0]]
    h4, w4 = t["pred_masks"].shape[-2:]
    assert f"{h4} x {w4}: 1/4 of the {H} x {W} input" in pages[page.PAGES[6][0]]
    assert "whose stride is 4" in pages[page.PAGES[6][0]]
    assert "The mask of query" in pages[page.PAGES[6][0]] and f"1/{s} → 1/4" in pages[page.PAGES[6][0]]
    # page 1: what the resize is, from the config
    assert resize_note(t.config) in pages[page.PAGES[1][0]]
    # page 3: the class indices are explained where they outnumber the categories (COCO: 250 vs 133)
    used, C = len(t.categories.used()), t.config.num_classes
    note = f"Only **{used} of the {C} indices are real categories**"
    assert (note in pages[page.PAGES[3][0]]) == (used < C)
    assert "The answer: one full-size map" in everything and "no position encoding" in pages[page.PAGES[4][0]]


def test_resize_note_names_the_official_training_scales_and_the_toy_worlds_size():
    official = resize_note(R50_PANOPTIC)
    assert "evaluation" in official and "480" in official and "800" in official
    from detr_viz.toyworld.config import TOYWORLD_CONFIG
    assert "160 x 160" in resize_note(TOYWORLD_CONFIG) and "480" not in resize_note(TOYWORLD_CONFIG)
