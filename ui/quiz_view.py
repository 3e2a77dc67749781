"""Check yourself: the widgets of the questions (`detr_viz.quiz`) and the session's score.

Every step page ends with `check_yourself(ctx, step)`: its 3 questions from the live trace, each a
radio with no default (multiple choice) or a number input, a "Check" button, and the feedback at
once (right or wrong, the explanation, where the page shows it). The answers are kept in session
state by (trace key, question id), so a new photo or model starts with fresh questions while the
answers to the old ones still count in the session's score (`score`), shown on the Questions page.
"""
from __future__ import annotations

import hashlib

import streamlit as st

from detr_viz import quiz

from . import state

K_ANSWERS = "quiz_answers"          # session key: {(model key, image hash, question id): record}
HEADER = "Check yourself"


def trace_tag(ctx: state.Context) -> str:
    """A short name of the trace for widget keys: new photo or model -> new widgets."""
    return hashlib.sha1("|".join(map(str, ctx.trace_key)).encode()).hexdigest()[:10]


def answers() -> dict:
    """The session's checked answers: {(model key, image hash, question id): {given, correct, step}}."""
    return st.session_state.setdefault(K_ANSWERS, {})


def answer_key(ctx: state.Context, qid: str) -> tuple:
    return (*ctx.trace_key, qid)


def widget_key(ctx: state.Context, question: quiz.Question) -> str:
    return f"quiz_{trace_tag(ctx)}_{question.id}"


def record(ctx: state.Context, question: quiz.Question, given) -> quiz.Feedback:
    """Check `given` and keep it (the latest check of a question counts)."""
    fb = quiz.check(question, given)
    answers()[answer_key(ctx, question.id)] = {"given": given, "correct": fb.correct, "step": question.step}
    return fb


def score(ctx: state.Context | None = None) -> dict:
    """right / answered: for this trace (ctx given) or for the whole session (ctx None)."""
    rows = [(k, v) for k, v in answers().items() if ctx is None or k[:-1] == tuple(ctx.trace_key)]
    return {"right": sum(v["correct"] for _, v in rows), "answered": len(rows)}


def score_by_step(ctx: state.Context) -> dict[int, dict]:
    """{step: {right, answered, total}} for this trace."""
    out = {}
    for question in quiz.questions(ctx.trace):
        row = out.setdefault(question.step, {"right": 0, "answered": 0, "total": 0})
        row["total"] += 1
        rec = answers().get(answer_key(ctx, question.id))
        if rec is not None:
            row["answered"] += 1
            row["right"] += bool(rec["correct"])
    return out


def _number_input(question: quiz.Question, key: str):
    """A number input with no default: whole numbers for an integer answer, else 2 decimals."""
    if isinstance(question.answer, int):
        return st.number_input("Your answer (a whole number)", value=None, step=1, min_value=0, key=key,
                               placeholder="type a number")
    return st.number_input("Your answer (a number)", value=None, step=0.01, format="%.2f", key=key,
                           placeholder="type a number")


def _on_check(ctx: state.Context, question: quiz.Question, key: str) -> None:
    """The Check button's callback (runs before the rerun, so the score is up to date everywhere)."""
    given = st.session_state.get(key)
    if given is None:
        st.session_state[f"{key}_empty"] = True
        return
    st.session_state.pop(f"{key}_empty", None)
    record(ctx, question, given)


def feedback(question: quiz.Question, fb: quiz.Feedback) -> None:
    """Right or wrong, the explanation, and where the page shows it."""
    show = st.success if fb.correct else st.warning
    show(fb.explanation, icon=":material/check_circle:" if fb.correct else ":material/cancel:")
    st.caption(f"Where to look: {fb.pointer}")


def one_question(ctx: state.Context, number: int, question: quiz.Question) -> None:
    key = widget_key(ctx, question)
    st.markdown(f"**{question.step}.{number}** {question.text}")
    if question.kind == quiz.CHOICE:
        st.radio("Your answer", list(question.options), index=None, key=key, label_visibility="collapsed",
                 format_func=lambda o: f"{quiz.LETTERS[question.options.index(o)]}. {o}")
    else:
        _number_input(question, key)
    st.button("Check", key=f"{key}_check", on_click=_on_check, args=(ctx, question, key))
    if st.session_state.get(f"{key}_empty"):
        st.caption("Pick an answer first, then press Check.")
    rec = answers().get(answer_key(ctx, question.id))
    if rec is not None:
        feedback(question, quiz.check(question, rec["given"]))


def check_yourself(ctx: state.Context, step: int) -> None:
    """The section that ends a step page: its 3 questions, checked at once, and the score so far."""
    qs = quiz.questions_for_step(ctx.trace, step)
    if not qs:
        return
    st.divider()
    st.header(HEADER)
    st.markdown(f"Three questions about this step, built from **this photo's** trace (another photo or model "
                f"gives other answers). The merge questions use the model's threshold, "
                f"{ctx.trace.threshold:g}.")
    for i, question in enumerate(qs, start=1):
        with st.container(border=True):
            one_question(ctx, i, question)
    mine = score_by_step(ctx).get(step, {"right": 0, "answered": 0})
    total = score(ctx)
    st.caption(f"This step: {mine['right']} of {len(qs)} right. All steps, this photo and model: "
               f"{total['right']} right of {total['answered']} answered (of {len(quiz.questions(ctx.trace))}). "
               "The Questions page keeps the score.")
