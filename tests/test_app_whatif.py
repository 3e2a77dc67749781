"""The what-if lab in AppTest: the controls of pages 4-7 and the What-if page (URL state, Reset,
bad URL values). The shipped toy model on toy scene 3, where the numbers mean something (docs/whatif.md):
query 0 is the star, whose attention is all in head 7."""
import numpy as np
import pytest
from app_helpers import app, assert_clean
from PIL import Image

from ui import state
from ui.whatif_url import DEFAULTS, parse, to_params
from ui.whatif_view import BADGE, FRAME, framed

SCENE = {"image": "toy:scene3.png"}
P4, P5, P6, P7, P9 = ("pages/4_Box_attention.py", "pages/5_Concat_Res5.py", "pages/6_Upsampling.py",
                      "pages/7_Merge.py", "pages/9_What_if.py")
STAR_HEAD7 = "With head 7 off, query 0 (star)'s mask keeps 0% of its 88 pixels and gains 0 (IoU 0.00)."


@pytest.fixture(autouse=True)
def toy_model_app(monkeypatch):
    monkeypatch.setenv(state.APP_MODEL_ENV, "toyworld")


def badges(at) -> int:
    return sum(BADGE in m.value for m in at.markdown)


def bold(at) -> list[str]:
    return [m.value.strip("*") for m in at.markdown if m.value.startswith("**") and m.value.endswith("**")]


def metric(at, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def open_page(path, **params):
    at = app(path, {**SCENE, **params}).run()
    assert_clean(at)
    return at


def test_page4_a_head_off_shows_the_badge_and_the_changed_numbers():
    at = open_page(P4)
    assert badges(at) == 0 and not at.metric                  # nothing switched off: no what-if result
    at.selectbox(key="wi_w_q").set_value(0).run()
    at.multiselect(key="wi_w_heads").set_value([7]).run()
    assert_clean(at)
    assert badges(at) == 1
    assert STAR_HEAD7 in bold(at)
    assert metric(at, "IoU with the traced mask") == "0.00" and metric(at, "Share of the mask kept") == "0%"
    at.multiselect(key="wi_w_heads").set_value(list(range(7))).run()        # heads 0-6 off: the star stays
    assert metric(at, "IoU with the traced mask") == "1.00"
    at.radio(key="wi_w_att").set_value("uniform").run()
    assert_clean(at)
    assert any(s.startswith("With uniform attention maps, with heads 0, 1, 2, 3, 4, 5 and 6 off") for s in bold(at))


def test_page5_features_versus_attention():
    at = open_page(P5)
    at.selectbox(key="wi_w_q").set_value(0).run()
    at.radio(key="wi_w_only").set_value("features").run()
    assert_clean(at)
    assert badges(at) == 1 and metric(at, "IoU with the traced mask") == "0.00"    # features only: empty
    assert any("features only" in s for s in bold(at))
    at.radio(key="wi_w_only").set_value("attention").run()
    assert metric(at, "IoU with the traced mask") == "0.98"                          # attention alone: nearly


def test_page6_skips_off_coarsen_the_mask():
    at = open_page(P6)
    at.selectbox(key="wi_w_q").set_value(0).run()
    at.multiselect(key="wi_w_skips").set_value(["res4", "res3", "res2"]).run()
    assert_clean(at)
    assert badges(at) == 1 and metric(at, "IoU with the traced mask") == "0.07"
    assert any(s.startswith("Without the res4, res3 and res2 skips, query 0 (star)") for s in bold(at))


def test_page7_drop_a_query_and_stuff_merge_off():
    at = open_page(P7)
    assert badges(at) == 0
    at.multiselect(key="wi_w_drop").set_value([0]).run()
    assert_clean(at)
    assert badges(at) == 1 and metric(at, "Pixels that changed owner") == "5.6%"
    assert any(s.startswith("Without query 0 (star), 5.6% of the pixels change owner") for s in bold(at))
    at.multiselect(key="wi_w_drop").set_value([]).run()
    at.checkbox(key="wi_w_stuff").uncheck().run()
    assert_clean(at)
    assert badges(at) == 1 and any(s.startswith("Without the stuff merge") for s in bold(at))


def test_what_if_page_from_a_url_reproduces_the_experiment_and_reset_clears_it():
    at = open_page(P9, wi_q="0", wi_heads="7", wi_drop="0")
    assert not at.warning                                       # every value understood
    assert STAR_HEAD7 in bold(at)                               # the same result as on page 4
    assert at.multiselect(key="wi_w_heads").value == [7] and at.selectbox(key="wi_w_q").value == 0
    assert badges(at) >= 3                                      # the intro's, the mask's and the merge's
    assert at.query_params["wi_heads"] == "7" and at.query_params["wi_drop"] == "0"   # still shareable
    at.button(key="wi_reset_9").click().run()
    assert_clean(at)
    assert badges(at) == 1                                      # only the intro's explanation is left
    assert at.multiselect(key="wi_w_heads").value == [] and at.multiselect(key="wi_w_drop").value == []
    assert not any(k in at.query_params for k in ("wi_heads", "wi_drop"))
    assert at.query_params["image"] == "toy:scene3.png"        # the other parameters stay


def test_what_if_page_occlusion_from_a_url_and_from_the_button():
    at = open_page(P9, wi_box="60,0,124,49")                   # the star's box on toy scene 3
    assert metric(at, "Pixels that changed owner") == "7.7%"
    assert any("query 0 (star) is no longer kept" in s for s in bold(at))
    at.button(key="wi_reset_9").click().run()
    assert not at.metric and "wi_box" not in at.query_params
    at.slider(key="wi_w_box_x").set_value((60, 124)).run()
    at.slider(key="wi_w_box_y").set_value((0, 49)).run()
    assert not at.metric                                        # nothing runs before the button
    at.button(key="wi_occlude").click().run()
    assert_clean(at)
    assert metric(at, "Pixels that changed owner") == "7.7%" and at.query_params["wi_box"] == "60,0,124,49"

def test_an_experiment_set_on_page4_is_on_the_what_if_page_and_in_its_url():
    at = open_page("app.py")
    at.switch_page(P4).run()
    at.selectbox(key="wi_w_q").set_value(0).run()
    at.multiselect(key="wi_w_heads").set_value([7]).run()
    at.switch_page(P9).run()
    assert_clean(at)
    assert STAR_HEAD7 in bold(at) and at.query_params["wi_heads"] == "7"


def test_bad_wi_values_get_a_note_and_the_defaults():
    at = open_page(P9, wi_heads="9", wi_att="shift:99,0", wi_thr="high", wi_drop="99", wi_box="0,0,0,0",
                   wi_colour="red")
    notes = "\n".join(w.value for w in at.warning)
    for key in ("wi_heads=9", "wi_att=shift:99,0", "wi_thr=high", "wi_drop=99", "wi_box=0,0,0,0", "wi_colour"):
        assert key in notes, key
    assert badges(at) == 1                                      # nothing was applied
    assert at.multiselect(key="wi_w_heads").value == []
    assert "wi_heads" not in at.query_params                    # the link is rewritten without them


def test_parse_and_to_params_round_trip():
    class Cfg:
        nheads, num_queries = 8, 20

    class Pre:
        original_size = (160, 160)

    class Trace:
        config, pre, grid, threshold = Cfg, Pre, (5, 5), 0.7

        def __getitem__(self, name):
            import torch
            logits = torch.full((1, 20, 10), -5.0)
            logits[0, :, -1] = 5.0
            logits[0, [1, 4], 0] = 10.0                         # queries 1 and 4 kept
            return logits

    params = {"wi_q": "4", "wi_heads": "5,2", "wi_renorm": "1", "wi_att": "shift:3,-2", "wi_only": "attention",
              "wi_skips": "res2,res4", "wi_drop": "1", "wi_stuff": "0", "wi_small": "0", "wi_thr": "0.50",
              "wi_box": "1,2,30,40"}
    exp, notes = parse(params, Trace())
    assert notes == []
    assert exp["heads"] == (2, 5) and exp["skips"] == ("res4", "res2") and exp["box"] == (1, 2, 30, 40)
    assert (exp["att"], exp["dx"], exp["dy"]) == ("shift", 3, -2) and exp["thr"] == 0.5
    assert to_params(exp) == {**params, "wi_heads": "2,5", "wi_skips": "res4,res2"}
    assert to_params(dict(DEFAULTS)) == {}
    exp, notes = parse({"wi_drop": "1,4"}, Trace())             # dropping every kept query: refused
    assert exp["drop"] == () and len(notes) == 1


def test_a_changed_picture_has_an_orange_frame():
    pic = framed(Image.new("RGB", (120, 80), (10, 20, 30)))
    a = np.asarray(pic)
    assert pic.size == (128, 88)
    assert (a[0] == FRAME).all() and (a[:, -1] == FRAME).all() and (a[44, 60] == (10, 20, 30)).all()
