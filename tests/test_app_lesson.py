"""Lessons in AppTest: a teacher session and student sessions of one app process (they share the
server's memory lesson store, as real sessions of one server do). A follower's poll is simulated
by re-running its page (the fragment only triggers that rerun)."""
import pytest
from app_helpers import app, assert_clean, texts

from detr_viz.lessons import LessonError
from ui import lesson, state

P3 = "pages/3_Decoder.py"


@pytest.fixture(autouse=True)
def tiny_model_app(monkeypatch):
    monkeypatch.setenv(state.APP_MODEL_ENV, state.TINY_RANDOM)


def start_teacher():
    t = app().run()
    t.images_before = len(t.get("image"))
    t.button(key="lesson_start").click().run()
    assert_clean(t)
    return t, t.session_state[lesson.K_CODE]


def join_student(code: str):
    s = app().run()
    s.text_input(key=lesson.W_JOIN).input(code.lower()).run()
    s.button(key="lesson_join").click().run()
    assert_clean(s)
    return s


def threshold(at):
    return at.session_state[state.K_THRESHOLD] if state.K_THRESHOLD in at.session_state else None


def title(at) -> str:
    return at.title[0].value if at.title else ""


def test_teacher_starts_a_lesson_with_code_link_and_qr():
    t, code = start_teacher()
    assert len(code) == 4 and code.isalpha()
    shown = texts(t)
    assert f"Lesson code: `{code}`" in shown and f"?lesson={code}" in shown
    assert len(t.get("image")) == t.images_before + 1    # the QR code (st.image)
    key = t.session_state[lesson.K_KEY]
    assert key not in str(dict(t.query_params)) and key not in shown   # the teacher key stays in the session
    assert lesson.store().is_teacher(code, key)
    cokey = t.session_state[lesson.K_COKEY]
    assert any(cokey in c.value for c in t.code)          # the co-teacher link is shown, the teacher's key not


def test_qr_code_is_large_enough_to_scan_from_afar():
    import io

    from PIL import Image
    link = lesson.join_link("KJPW")
    assert link.endswith("?lesson=KJPW")
    for text in [link, "http://classroom-server.example.org:8501/?lesson=KJPW"]:
        img = Image.open(io.BytesIO(lesson.qr_png(text)))
        assert lesson.QR_PIXELS <= img.width < 2 * lesson.QR_PIXELS and img.width == img.height


def test_student_follows_page_query_and_threshold():
    t, code = start_teacher()
    s = join_student(code)
    t.switch_page(P3).run()
    assert_clean(t)
    s.run()                                               # the poll's rerun: the student goes to page 3
    assert_clean(s)
    assert title(s) == title(t) != ""
    options = t.selectbox(key="dec_query").options
    t.selectbox(key="dec_query").set_value(t.selectbox(key="dec_query").value if len(options) < 2 else
                                           int(options[1].split(":")[0].split()[-1])).run()
    t.slider(key="threshold_widget").set_value(0.42).run()
    teacher_query = t.session_state[state.K_QUERY]
    s.run()
    assert_clean(s)
    assert s.session_state[state.K_THRESHOLD] == pytest.approx(0.42)
    assert s.slider(key="threshold_widget").value == pytest.approx(0.42)       # the widget shows it too
    assert s.session_state[state.K_QUERY] == teacher_query
    assert s.selectbox(key="dec_query").value == t.selectbox(key="dec_query").value


def test_detach_and_reattach():
    t, code = start_teacher()
    s = join_student(code)
    s.button(key="lesson_detach").click().run()
    assert not s.session_state[lesson.K_FOLLOW]
    t.slider(key="threshold_widget").set_value(0.61).run()
    s.run()
    assert threshold(s) != pytest.approx(0.61)                                  # on their own
    s.slider(key="threshold_widget").set_value(0.15).run()
    assert lesson.store().get(code).choices["threshold"] == pytest.approx(0.61)  # the student drives nothing
    s.button(key="lesson_attach").click().run()
    assert_clean(s)
    assert s.session_state[state.K_THRESHOLD] == pytest.approx(0.61)


def test_edited_url_gives_a_student_no_control():
    t, code = start_teacher()
    s = app(query_params={"lesson": code, "teach": "forged-key"}).run()
    assert_clean(s)
    assert s.session_state[lesson.K_CODE] == code and lesson.K_KEY not in s.session_state
    assert "not valid" in texts(s)
    assert "teach" not in s.query_params                  # the key is taken out of the address bar
    version = lesson.store().get(code).version
    s.button(key="lesson_detach").click().run()
    s.slider(key="threshold_widget").set_value(0.9).run()
    assert lesson.store().get(code).version == version
    with pytest.raises(LessonError, match="Only the teacher"):
        lesson.store().update(code, "forged-key", threshold=0.9)


def test_coteacher_link_drives():
    t, code = start_teacher()
    c = app(query_params={"lesson": code, "teach": t.session_state[lesson.K_COKEY]}).run()
    assert_clean(c)
    assert lesson.is_teacher.__name__ and c.session_state[lesson.K_KEY] == t.session_state[lesson.K_COKEY]
    c.slider(key="threshold_widget").set_value(0.77).run()
    assert lesson.store().get(code).choices["threshold"] == pytest.approx(0.77)


def test_question_answer_count_reveal():
    t, code = start_teacher()
    s = join_student(code)
    t.switch_page(P3).run()
    t.button(key="lesson_ask").click().run()
    assert_clean(t)
    q = lesson.store().get(code).question
    assert q is not None and q.revealed is None
    s.run()
    assert_clean(s)
    assert any(q.text in m.value for m in s.markdown)
    pick = q.options[0]
    s.radio(key=f"{lesson.W_ANSWER}_{q.qid}").set_value(pick).run()
    s.button(key="lesson_send_answer").click().run()
    assert "Your answer is in" in texts(s)
    assert not lesson.store().answer(code, s.session_state[lesson.K_SID], q.qid, q.options[1])  # one per session
    t.run()
    assert lesson.store().counts(code)[pick] == 1
    assert f"{pick}: **1**" in texts(t) and "1 answers" in texts(t)
    t.button(key="lesson_reveal").click().run()
    right = t.session_state[lesson.K_ASKED]
    assert lesson.store().get(code).question.revealed == right
    s.run()
    assert any(right in x.value for x in s.success)


def test_unknown_or_malformed_code_says_so():
    s = app().run()
    s.text_input(key=lesson.W_JOIN).input("ZZZZ").run()
    s.button(key="lesson_join").click().run()
    assert any("There is no lesson ZZZZ" in e.value for e in s.error)
    s.text_input(key=lesson.W_JOIN).input("12").run()
    s.button(key="lesson_join").click().run()
    assert any("is not a lesson code" in e.value for e in s.error)
    assert lesson.K_CODE not in s.session_state
    u = app(query_params={"lesson": "QQQQ"}).run()
    assert "There is no lesson QQQQ" in texts(u) and lesson.K_CODE not in u.session_state


def test_ended_lesson_lets_followers_continue():
    t, code = start_teacher()
    s = join_student(code)
    t.button(key="lesson_end").click().run()
    with pytest.raises(LessonError):
        lesson.store().get(code)
    s.run()
    assert_clean(s)
    assert "has ended" in texts(s) and lesson.K_CODE not in s.session_state


def test_projector_toggle_injects_large_type():
    s = app().run()
    assert not any("font-size: 26px" in m.value for m in s.markdown)
    s.toggle(key=lesson.K_PROJECTOR).set_value(True).run()
    assert any("font-size: 26px" in m.value for m in s.markdown)
