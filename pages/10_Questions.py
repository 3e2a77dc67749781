"""Questions: the curriculum, question by question (its questions 1-3 and steps 4.1-4.6), each with a
link to the page that answers it, the answer with this photo's numbers, and the verdict on the
curriculum's own answer with the live checks behind it; and the session's check-yourself score.

A thin view over detr_viz.curriculum and detr_viz.quiz (ui.quiz_view keeps the answers).
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from detr_viz import curriculum
from detr_viz.stages import STEPS
from ui import page, quiz_view, state

STEP = page.QUESTIONS
VERDICT = {curriculum.RIGHT: (st.success, ":material/check_circle:", "right"),
           curriculum.LOOSE: (st.info, ":material/info:", "loose"),
           curriculum.WRONG: (st.warning, ":material/cancel:", "wrong")}


def your_score(ctx: state.Context) -> None:
    """The session's check-yourself score: this photo and model, step by step, and all of the session."""
    st.header("Your score")
    mine, total = quiz_view.score(ctx), quiz_view.score()
    by_step = quiz_view.score_by_step(ctx)
    n = sum(r["total"] for r in by_step.values())
    c1, c2 = st.columns(2)
    c1.metric("Right, this photo and model", f"{mine['right']} of {n}", help=f"{mine['answered']} answered")
    c2.metric("Right, this session (every photo and model)", f"{total['right']} of {total['answered']} answered")
    st.markdown(f"Every step page ends with **{quiz_view.HEADER}**: three questions built from this photo's "
                f"trace. You have answered **{mine['answered']} of {n}** for this photo and model.")
    st.dataframe(pd.DataFrame([{"step": f"{s} · {STEPS[s - 1].title}", "answered": r["answered"],
                                "right": r["right"], "questions": r["total"]} for s, r in sorted(by_step.items())]),
                 hide_index=True, width="stretch")


def the_curriculum(ctx: state.Context) -> None:
    """The nine curriculum items in order: quote, link, live answer, verdict, live checks."""
    st.header("The curriculum, answered for this photo")
    st.markdown("The curriculum asks three questions, then explains the panoptic head in six steps (4.1 - 4.6). "
                "Each is quoted below, answered with **this photo's** numbers, linked to the page that shows it, "
                "and, where the curriculum's own answer is loose or wrong, ruled on with live checks.")
    for a in curriculum.answers(ctx.trace):
        item(a)


def plain_verdict(verdict: str, word: str) -> str:
    """The verdict without its leading rating word ('Loose: the maps ...' -> 'the maps ...')."""
    for lead in (f"{word.capitalize()}: ", f"{word.capitalize()}. "):
        if verdict.startswith(lead):
            rest = verdict[len(lead):]
            return rest[:1].upper() + rest[1:]
    return verdict


def value_text(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def item(a: curriculum.Answer) -> None:
    with st.container(border=True):
        st.subheader(f"{'Question' if '.' not in a.key else 'Step'} {a.key}")
        st.markdown(f"> *{a.quote}*")
        if a.given:
            st.markdown(f"The curriculum's answer: *{a.given}*")
        page.link(page.PAGES[a.step][0], f"Answered on step {a.step} · {a.step_title}",
                  icon=f":material/counter_{a.step}:")
        st.markdown(f"**Answer.** {a.answer}")
        show, icon, word = VERDICT[a.rating]
        show(f"**The curriculum is {word} here.** {plain_verdict(a.verdict, word)}", icon=icon)
        if a.checks:
            st.dataframe(pd.DataFrame([{"live check": c["claim"], "value": value_text(c["value"]),
                                        "holds": bool(c["holds"])} for c in a.checks]),
                         hide_index=True, width="stretch",
                         column_config={"holds": st.column_config.CheckboxColumn("holds")})


page.run(STEP, [your_score, the_curriculum], title="Questions: the curriculum, answered", shapes=False)
