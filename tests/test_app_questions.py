"""Check yourself and the Questions page in AppTest with the tiny random model: a step page's questions
answered right and wrong give their feedback at once, the score follows on the Questions page, a new
photo starts fresh questions, and the Questions page links each curriculum item to its step page."""
import re

import pytest
from app_helpers import app, assert_clean, session_trace, texts

from detr_viz import curriculum, quiz
from ui import page, quiz_view, state

QUESTIONS = page.PAGES[page.QUESTIONS][0]
BOX_ATTENTION = page.PAGES[4][0]
ENCODER = page.PAGES[2][0]


@pytest.fixture(autouse=True)
def tiny_model_app(monkeypatch):
    monkeypatch.setenv(state.APP_MODEL_ENV, state.TINY_RANDOM)


def quiz_radio(at, qid):
    return next(r for r in at.radio if r.key and r.key.startswith("quiz_") and r.key.endswith("_" + qid))


def options(radio) -> list[str]:
    """The radio's options without their letters ('C. 8 maps of 25 x 32' -> '8 maps of 25 x 32')."""
    return [o.split(". ", 1)[1] for o in radio.options]


def check_button(at, widget_key):
    return next(b for b in at.button if b.key == widget_key + "_check")


def feedback(at) -> tuple[list[str], list[str]]:
    """(right, wrong) feedback boxes of the last run."""
    return [s.value for s in at.success], [w.value for w in at.warning]


def test_box_attention_question_right_then_wrong_and_the_score_follows():
    at = app().run().switch_page(BOX_ATTENTION).run()
    assert_clean(at)
    assert any(h.value == quiz_view.HEADER for h in at.header)
    t = session_trace(at)
    _, N, M, h, w = t.shape("bbox_attention")                     # read from the trace, not from the quiz
    right = f"{M} maps of {h} x {w}"
    radio = quiz_radio(at, "s4.maps")
    assert radio.value is None                                    # no default answer
    assert right in options(radio) and len(set(options(radio))) == 4
    successes_before = len(at.success)

    radio.set_value(right)
    check_button(at, radio.key).click()
    at.run()
    assert_clean(at)
    good, bad = feedback(at)
    assert len(good) == successes_before + 1 and not any("Not quite" in b for b in bad)
    assert good[-1].startswith("Right.") and f"M = {M}" in good[-1]
    assert any("Where to look: Step 4" in c.value for c in at.caption)
    assert at.session_state[quiz_view.K_ANSWERS][(state.TINY_RANDOM, t_hash(at), "s4.maps")]["correct"]

    wrong = next(o for o in options(radio) if o != right)
    quiz_radio(at, "s4.maps").set_value(wrong)
    check_button(at, radio.key).click()
    at.run()
    assert_clean(at)
    good, bad = feedback(at)
    assert len(good) == successes_before                          # the right-answer box is gone
    assert any(b.startswith("Not quite: the answer is ") and right in b for b in bad), bad

    # the number question of step 2, answered right: the grid's cell count, read from the trace
    at.switch_page(ENCODER).run()
    D_hw = t.shape("memory")[-2] * t.shape("memory")[-1]
    box = next(n for n in at.number_input if n.key.endswith("_s2.tokens"))
    assert box.value is None
    box.set_value(D_hw)
    check_button(at, box.key).click()
    at.run()
    assert_clean(at)
    assert any(s.startswith("Right.") and str(D_hw) in s for s in feedback(at)[0])

    # the Questions page keeps the score: 1 right (s2.tokens) of 2 answered (s4.maps is now wrong)
    at.switch_page(QUESTIONS).run()
    assert_clean(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Right, this photo and model"] == f"1 of {len(quiz.questions(t))}"
    assert metrics["Right, this session (every photo and model)"] == "1 of 2 answered"


def t_hash(at) -> str:
    return state.image_hash(at.session_state[state.K_IMAGE_BYTES])


def test_an_empty_check_asks_for_an_answer_and_records_nothing():
    at = app(BOX_ATTENTION).run()
    radio = quiz_radio(at, "s4.sum")
    check_button(at, radio.key).click()
    at.run()
    assert_clean(at)
    assert any("Pick an answer first" in c.value for c in at.caption)
    assert not at.session_state[quiz_view.K_ANSWERS]


def test_a_new_photo_starts_fresh_questions():
    at = app().run().switch_page(BOX_ATTENTION).run()
    radio = quiz_radio(at, "s4.sum")
    radio.set_value(options(radio)[0])
    check_button(at, radio.key).click()
    at.run()
    old_key = radio.key
    assert len(at.session_state[quiz_view.K_ANSWERS]) == 1
    at.switch_page("app.py").run()
    at.selectbox(key="sample_widget").set_value("toy:scene2.png").run()
    assert_clean(at)
    at.switch_page(BOX_ATTENTION).run()
    assert_clean(at)
    new = quiz_radio(at, "s4.sum")
    assert new.key != old_key and new.value is None               # new widgets for the new trace
    assert not any("Not quite" in w or w.startswith("Right.") for w in [*feedback(at)[0], *feedback(at)[1]])
    at.switch_page(QUESTIONS).run()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Right, this photo and model"].startswith("0 of ")   # the old answer is the old photo's
    assert metrics["Right, this session (every photo and model)"].endswith("of 1 answered")


def test_questions_page_quotes_the_curriculum_in_order_and_links_each_item_to_its_page():
    at = app(QUESTIONS).run()
    assert_clean(at)
    t = session_trace(at)
    items = curriculum.answers(t)
    assert [i.key for i in items] == ["1", "2", "3", "4.1", "4.2", "4.3", "4.4", "4.5", "4.6"]
    body = [m.value for m in at.markdown]
    quotes = [m for m in body if m.startswith("> *")]
    assert quotes == [f"> *{i.quote}*" for i in items]
    links = [re.match(r"\[Answered on step (\d) · [^\]]+\]\((/\w+)\)", m) for m in body]
    links = [(int(m.group(1)), m.group(2)) for m in links if m]
    assert links == [(i.step, page.url_of(page.PAGES[i.step][0])) for i in items]
    # the right pages: 1 and 2 on the encoder / box attention, 3 on the concat, 4.6 on the merge
    assert [s for s, _ in links] == [2, 4, 5, 3, 4, 4, 6, 7, 7]
    assert dict(links)[4] == "/Box_attention" and dict(links)[7] == "/Merge"
    # the verdicts, live: 4.2's box-independence numbers are on the page
    demo = curriculum.box_independence(t)
    verdicts = "\n".join([w.value for w in at.warning] + [i.value for i in at.info] + [s.value for s in at.success])
    assert f"Moving query {demo['query']}'s box" in verdicts
    assert f"{demo['embedding_max_diff']:.3g}" in verdicts
    assert "**The curriculum is wrong here.**" in verdicts and "**The curriculum is loose here.**" in verdicts
    assert "Your score" in [h.value for h in at.header]
    assert "0 of 0 answered" in {m.value for m in at.metric}


def test_a_linked_page_opens_on_its_step():
    at = app().run().switch_page(QUESTIONS).run()
    for a in curriculum.answers(session_trace(at))[:3]:
        at.switch_page(page.PAGES[a.step][0]).run()
        assert_clean(at)
        assert any(c.value == f"Step {a.step} of 7" for c in at.caption)
        assert a.step_title in [t.value for t in at.title]


def test_every_step_page_ends_with_its_three_questions():
    at = app().run()
    t = session_trace(at)
    for step in range(1, 8):
        at.switch_page(page.PAGES[step][0]).run()
        assert_clean(at)
        qs = quiz.questions_for_step(t, step)
        shown = [m.value for m in at.markdown if re.match(rf"\*\*{step}\.\d\*\* ", m.value)]
        assert shown == [f"**{step}.{i}** {q.text}" for i, q in enumerate(qs, start=1)]
        assert "Check yourself" in texts(at) or any(h.value == quiz_view.HEADER for h in at.header)
