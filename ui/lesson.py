"""Lessons in the app: the teacher drives, the class follows (the rules and the store live in
`detr_viz.lessons`; this module is the Streamlit side).

- `follow(step)`: at the start of every page run (page.setup, and Home). A student who follows
  takes the teacher's choices into the session (image, model, threshold, query, head, pixel,
  layer, ...) and is sent to the teacher's page; a teacher publishes their choices when they change.
- `panel(ctx, step)`: the sidebar box: lesson status, "Explore on my own" / "Back to the teacher",
  the class question (ask / answer / live count / reveal), and the projector toggle.
- `home_section()`: Home's "Teach a lesson / Join a lesson" section.

A session holds the lesson code, whether it follows, a random answer id, and (teacher only) the
secret teacher key: in session state, never in the URL.
"""
from __future__ import annotations

import io
import secrets
from urllib.parse import urlencode, urlsplit

import streamlit as st
from streamlit import config as _st_config

from detr_viz import quiz
from detr_viz.lessons import LessonError, Question, lesson_store_from_env, normalize_code

from . import session
from .page_files import PAGES

# Session keys.
K_CODE, K_KEY, K_COKEY = "lesson_code", "lesson_teacher_key", "lesson_coteacher_key"
K_FOLLOW, K_SID, K_NOTE = "lesson_follow", "lesson_sid", "lesson_note"
K_PUBLISHED, K_ANSWERED, K_ASKED = "lesson_published", "lesson_answered", "lesson_asked"
K_URL_SEEN, K_PROJECTOR = "lesson_url_seen", "projector"
W_JOIN, W_QUESTION, W_ANSWER = "lesson_join_code", "lesson_question_pick", "lesson_answer_pick"
QP_LESSON, QP_TEACH = "lesson", "teach"
QR_PIXELS = 600                                # the QR code's PNG is at least this wide
POLL_S = 1                                     # a follower looks for the teacher's changes this often

# What a lesson carries besides image, model, threshold and page: the session keys pages use for
# their selections (plain keys and widget keys), copied as they are.
FOLLOWED_KEYS = (session.K_QUERY, "att_query", "att_head", "enc_layer", "enc_heads", "dec_layer",
                 "dec_heads", "bb_level", "upsampling_view", "merge_pixel", "enc_click")
TUPLE_KEYS = {"merge_pixel"}                   # (trace_key, (x, y)): JSON gives lists back
# Widgets that show K_QUERY / K_THRESHOLD (page.query_picker, page.threshold_slider): their own state
# is set to the teacher's value too, so they draw it instead of writing the old one back.
QUERY_WIDGETS = ("dec_query", "concat_query", "upsampling_query")
THRESHOLD_WIDGETS = ("threshold_widget",)

# A follower's widget keys are set through session state before the page draws the widget; a widget
# with its own default then prints a warning once per server. The lesson sets them on purpose.
_st_config.set_option("global.disableWidgetStateDuplicationWarning", True)


@st.cache_resource(show_spinner=False)
def store():
    """The server's lesson store (memory, or Redis with DETR_VIZ_LESSON_STORE)."""
    return lesson_store_from_env()


def _ss():
    return st.session_state


def session_id() -> str:
    """A random id of this browser session: one answer per session, no name."""
    ss = _ss()
    if K_SID not in ss:
        ss[K_SID] = secrets.token_urlsafe(12)
    return ss[K_SID]


def is_teacher() -> bool:
    return bool(_ss().get(K_CODE) and _ss().get(K_KEY))


def following() -> bool:
    return bool(_ss().get(K_CODE) and not _ss().get(K_KEY) and _ss().get(K_FOLLOW))


# ---- choices ------------------------------------------------------------------------------------
def current_choices(step: int) -> dict:
    """This session's choices, as a lesson carries them (plain JSON values)."""
    ss = _ss()
    params = session.url_params()
    out = {"page": int(step or 0), "image": params.get(session.QP_IMAGE), "model": params.get(session.QP_MODEL),
           "threshold": float(ss[session.K_THRESHOLD]) if session.K_THRESHOLD in ss else None}
    out["keys"] = {k: _jsonable(ss[k]) for k in FOLLOWED_KEYS if k in ss and _jsonable(ss[k]) is not None}
    out["whatif"] = {k: v for k, v in st.query_params.to_dict().items() if k.startswith("wi_")}
    return out


def _jsonable(value):
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        items = [_jsonable(v) for v in value]
        return None if any(i is None for i in items) else items
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    try:                                       # numpy scalars
        return value.item()
    except AttributeError:
        return None


def _tuples(value):
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def apply_choices(choices: dict) -> None:
    """Take a lesson's choices into this session: the image through the same path a URL's `image=`
    takes, then the model, the threshold and the pages' selections (setting the image or the
    model drops the query, so they go first)."""
    ss = _ss()
    image = choices.get("image")
    if image and image != ss.get(session.K_IMAGE_SOURCE):
        note = session._restore_image(image)
        if note:
            ss[K_NOTE] = note
    model = choices.get("model")
    if model and model != ss.get(session.K_MODEL) and session.models.model_allowed(model):
        session.use_model(model)
    if choices.get("threshold") is not None and ss.get(session.K_THRESHOLD) != float(choices["threshold"]):
        ss[session.K_THRESHOLD] = float(choices["threshold"])
        for w in THRESHOLD_WIDGETS:
            ss[w] = float(choices["threshold"])
    query = (choices.get("keys") or {}).get(session.K_QUERY)
    if query is not None and ss.get(session.K_QUERY) != query:
        for w in QUERY_WIDGETS:
            if w in ss:
                ss[w] = query
    for k, v in (choices.get("keys") or {}).items():
        if k in FOLLOWED_KEYS and ss.get(k) != (_tuples(v) if k in TUPLE_KEYS else v):
            ss[k] = _tuples(v) if k in TUPLE_KEYS else v
    whatif = choices.get("whatif") or {}
    if whatif and any(st.query_params.get(k) != v for k, v in whatif.items()):
        st.query_params.update(whatif)


# ---- every run ----------------------------------------------------------------------------------
def _join_from_url() -> None:
    """`?lesson=CODE` joins (once per code); `&teach=KEY` with the co-teacher key makes this session
    a teacher. The key is taken out of the address bar."""
    qp, ss = st.query_params, _ss()
    raw, key = qp.get(QP_LESSON), qp.get(QP_TEACH)
    if key:
        del qp[QP_TEACH]
    if not raw or (ss.get(K_URL_SEEN) == raw and not key):
        return
    ss[K_URL_SEEN] = raw
    try:
        code = join(raw)
    except LessonError as e:
        ss[K_NOTE] = str(e)
        return
    if key:
        if store().is_teacher(code, key):
            ss[K_KEY], ss[K_FOLLOW] = key, False
            ss[K_NOTE] = f"You co-teach lesson {code}: your changes drive the class."
        else:
            ss[K_NOTE] = ("This link's teacher key is not valid for this lesson, so you follow it as a "
                          "student. Ask the teacher for the co-teacher link to drive.")


def join(text: str) -> str:
    """Join the lesson with this code as a student; LessonError with a clear message if there is none."""
    code = normalize_code(text)
    store().get(code)
    ss = _ss()
    ss[K_CODE], ss[K_FOLLOW] = code, True
    ss.pop(K_KEY, None)
    ss.pop(K_PUBLISHED, None)
    return code


def leave(note: str | None = None) -> None:
    ss = _ss()
    for k in (K_CODE, K_KEY, K_COKEY, K_FOLLOW, K_PUBLISHED, K_ASKED):
        ss.pop(k, None)
    if note:
        ss[K_NOTE] = note


def follow(step: int | None) -> None:
    """Start of a page run: join from the URL; a follower takes the teacher's choices (and page);
    a teacher publishes theirs."""
    _join_from_url()
    if following():
        _catch_up(step)
    elif is_teacher():
        publish(step)


def _catch_up(step: int | None) -> None:
    ss = _ss()
    try:
        lesson = store().get(ss[K_CODE])
    except LessonError:
        leave(f"The lesson {ss[K_CODE]} has ended. You continue on your own.")
        return
    apply_choices(lesson.choices)
    ss["lesson_version"] = lesson.version
    target = lesson.choices.get("page")
    if target is not None and int(target) != int(step or 0):
        if int(target) in PAGES:
            st.switch_page(PAGES[int(target)][0])


def publish(step: int | None) -> None:
    """The teacher's choices into the lesson, when they changed (one store write per change)."""
    ss = _ss()
    choices = current_choices(step)
    if choices == ss.get(K_PUBLISHED):
        return
    try:
        store().update(ss[K_CODE], ss[K_KEY], **choices)
    except LessonError as e:
        leave(f"{e} The lesson is no longer driven from here.")
        return
    ss[K_PUBLISHED] = choices


def _poll() -> None:
    """A follower: rerun the page when the teacher changed something; show the question."""
    ss = _ss()
    if not following():
        return
    try:
        lesson = store().get(ss[K_CODE])
    except LessonError:
        leave(f"The lesson {ss[K_CODE]} has ended. You continue on your own.")
        st.rerun(scope="app")
        return
    if lesson.version != ss.get("lesson_version"):
        st.rerun(scope="app")
    _student_question(lesson)


def _student_question(lesson) -> None:
    q = lesson.question
    if q is None:
        return
    ss = _ss()
    st.markdown(f"**Question for the class:** {q.text}")
    if q.revealed is not None:
        st.success(f"The right answer: **{q.revealed}**")
    if ss.get(K_ANSWERED) != (lesson.code, q.qid):
        answer = st.container()
        pick = answer.radio("Your answer", q.options, index=None, key=f"{W_ANSWER}_{q.qid}")
        if not answer.button("Send my answer", key="lesson_send_answer"):
            return
        if pick is None:
            answer.warning("Pick an answer first, then send it.")
            return
        try:
            store().answer(lesson.code, session_id(), q.qid, pick)
        except LessonError as e:
            st.warning(str(e))
            return
        ss[K_ANSWERED] = (lesson.code, q.qid)
        answer.empty()
    st.caption("Your answer is in (anonymous).")


def _teacher_live() -> None:
    """The teacher: publish late changes (a page may set a selection while it draws), and the live
    anonymous count of the class's answers, with the reveal button."""
    ss = _ss()
    if not is_teacher():
        return
    publish(ss.get(K_PUBLISHED, {}).get("page"))
    try:
        lesson = store().get(ss[K_CODE])
    except LessonError:
        return
    q = lesson.question
    if q is None:
        return
    counts = store().counts(lesson.code)
    st.markdown(f"**Asked:** {q.text}")
    total = sum(counts.values())
    st.markdown("  \n".join(f"{o}: **{n}**" for o, n in counts.items()) + f"  \n{total} answers")
    if q.revealed is None and st.button("Reveal the right answer", key="lesson_reveal"):
        q = store().reveal(lesson.code, ss[K_KEY], ss.get(K_ASKED)).question
    if q.revealed is not None:
        st.success(f"Revealed: **{q.revealed}**")


# ---- the sidebar box ----------------------------------------------------------------------------
def panel(ctx, step: int | None) -> None:
    """The lesson box in the sidebar (and the projector toggle, for anyone)."""
    ss = _ss()
    with st.sidebar:
        note = ss.pop(K_NOTE, None)
        if note:
            st.info(note)
        if ss.get(K_CODE):
            st.subheader(f"Lesson {ss[K_CODE]}")
            if is_teacher():
                st.caption("You drive this lesson: the class follows your page and choices.")
                if ctx is not None:
                    _ask_box(ctx, step)
                st.fragment(run_every=POLL_S)(_teacher_live)()
            elif following():
                st.caption("You follow the teacher's screen.")
                if st.button("Explore on my own", key="lesson_detach"):
                    ss[K_FOLLOW] = False
                    st.rerun()
                st.fragment(run_every=POLL_S)(_poll)()
            else:
                st.caption("You explore on your own; the lesson goes on.")
                if st.button("Back to the teacher", key="lesson_attach", type="primary"):
                    ss[K_FOLLOW] = True
                    st.rerun()
        st.toggle("Projector view (large type)", key=K_PROJECTOR)
    if ss.get(K_PROJECTOR):
        projector_styles()


def _ask_box(ctx, step: int | None) -> None:
    """The teacher puts one of this page's check-yourself questions (multiple choice) to the class."""
    if not step or step > 7:
        return
    choices = [q for q in quiz.questions_for_step(ctx.trace, step) if q.kind == quiz.CHOICE]
    if not choices:
        return
    by_id = {q.id: q for q in choices}
    qid = st.selectbox("Question for the class", list(by_id), format_func=lambda i: by_id[i].text,
                       key=W_QUESTION)
    if st.button("Ask the class", key="lesson_ask"):
        q = by_id[qid]
        store().ask(_ss()[K_CODE], _ss()[K_KEY], Question(q.id, q.text, list(q.options)))
        _ss()[K_ASKED] = q.answer


PROJECTOR_CSS = """<style>
html, body, [data-testid="stAppViewContainer"] { font-size: 26px !important; }
[data-testid="stMarkdownContainer"] p, [data-testid="stMarkdownContainer"] li,
[data-testid="stCaptionContainer"], label, [data-testid="stWidgetLabel"] p { font-size: 1.25rem !important; line-height: 1.45; }
h1 { font-size: 3.2rem !important; } h2 { font-size: 2.6rem !important; } h3 { font-size: 2.1rem !important; }
[data-testid="stMainBlockContainer"], .block-container { max-width: 100% !important; padding-left: 2rem; padding-right: 2rem; }
[data-testid="stMarkdownContainer"] p { max-height: 9.5em; overflow: hidden; }
[data-testid="stMarkdownContainer"] p:hover { max-height: none; }
</style>"""


def projector_styles() -> None:
    """Large type and a full-width layout for a projector. Best effort: it is CSS over the same page
    (long paragraphs are cut at about six lines and open on hover), not a separate layout."""
    st.markdown(PROJECTOR_CSS, unsafe_allow_html=True)


# ---- Home ---------------------------------------------------------------------------------------
def base_url() -> str:
    """The app's address as the browser sees it (st.context.url), else a relative link."""
    url = getattr(st.context, "url", None) or ""
    if url:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.netloc}/"
    host = (getattr(st.context, "headers", None) or {}).get("Host")
    return f"http://{host}/" if host else "/"


def join_link(code: str, coteacher_key: str | None = None) -> str:
    params = {QP_LESSON: code, **({QP_TEACH: coteacher_key} if coteacher_key else {})}
    return base_url() + "?" + urlencode(params)


def qr_png(text: str) -> bytes:
    """A QR code of `text` (segno), at least QR_PIXELS wide whatever the link's length, with whole
    pixels per module: projected at half a 1080p screen's height it is ~1 m wide, scannable from 8 m."""
    import segno
    qr = segno.make(text, error="m", micro=False)
    width = qr.symbol_size(scale=1, border=2)[0]
    buf = io.BytesIO()
    qr.save(buf, kind="png", scale=max(4, -(-QR_PIXELS // width)), border=2)
    return buf.getvalue()


def home_section() -> None:
    """Home: follow/publish, then "Teach a lesson / Join a lesson"."""
    follow(0)
    ss = _ss()
    with st.expander("Teach a lesson / Join a lesson", expanded=bool(ss.get(K_CODE))):
        if is_teacher():
            _teacher_home()
        elif ss.get(K_CODE):
            st.markdown(f"You are in lesson **{ss[K_CODE]}**.")
            if st.button("Leave the lesson", key="lesson_leave"):
                leave("You left the lesson.")
                st.rerun()
        else:
            _start_or_join()
    panel(None, 0)


def _start_or_join() -> None:
    ss = _ss()
    teach, join_col = st.columns(2, gap="large")
    with teach:
        st.markdown("**Teach.** Start a lesson: the class follows your page and choices live.")
        if st.button("Start a lesson", key="lesson_start", type="primary"):
            try:
                new = store().create(current_choices(0))
            except LessonError as e:
                st.error(str(e))
                return
            ss[K_CODE], ss[K_KEY], ss[K_COKEY], ss[K_FOLLOW] = new.code, new.teacher_key, new.coteacher_key, False
            ss.pop(K_PUBLISHED, None)
            st.rerun()
    with join_col:
        st.markdown("**Join.** Enter the code on the teacher's screen.")
        code = st.text_input("Lesson code", key=W_JOIN, max_chars=12, placeholder="KJPW")
        if st.button("Join the lesson", key="lesson_join"):
            try:
                join(code)
                st.rerun()
            except LessonError as e:
                st.error(str(e))


def _teacher_home() -> None:
    ss = _ss()
    code = ss[K_CODE]
    link = join_link(code)
    left, right = st.columns([1, 1], gap="large")
    with left:
        st.markdown(f"## Lesson code: `{code}`")
        st.markdown(f"Students open **{link}** or enter the code on Home.")
        st.markdown("Co-teacher link (a second device of yours that may drive; keep it private):")
        st.code(join_link(code, ss.get(K_COKEY)), language=None)
        if st.button("End the lesson", key="lesson_end"):
            try:
                store().end(code, ss[K_KEY])
            except LessonError:
                pass
            leave(f"Lesson {code} has ended.")
            st.rerun()
    with right:
        st.image(qr_png(link), caption=f"Scan to join lesson {code}", width=480)
