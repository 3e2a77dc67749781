"""A printable worksheet: the check-yourself questions of one photo as Markdown, and the answer key.

    python -m detr_viz quiz photo.jpg --model toyworld --out worksheet/

writes `worksheet.md` (the 21 questions, grouped by step, with blanks), `answer_key.md` (the
answers, why, and where the app shows it, then the curriculum answered for this photo) and
`questions.json` (the same questions as data).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import MODELS, ImageError, WeightsUnavailable, trace
from .curriculum import answers
from .models import DEFAULT_MODEL, OFFLINE_MODEL
from .quiz import CHOICE, LETTERS, Question, questions
from .stages import STEPS


def _number(qs, question: Question) -> str:
    """'4.2': step 4, its second question."""
    same = [x for x in qs if x.step == question.step]
    return f"{question.step}.{same.index(question) + 1}"


def _about(t, name: str) -> str:
    D = t.pre
    return (f"Photo **{name}**, {D.original_size[1]} x {D.original_size[0]} px (width x height); network input "
            f"{D.processed_size[1]} x {D.processed_size[0]}; model **{getattr(t.model, 'model_name', 'custom')}** "
            f"(stride {t.config.stride}, d = {t.config.hidden_dim}, {t.config.nheads} heads, "
            f"{t.config.num_queries} queries); merge threshold {t.threshold:g}.")


def render_worksheet(t, name: str = "photo") -> str:
    """The questions as Markdown, grouped by step, with a blank for each answer."""
    qs = questions(t)
    lines = [f"# Check yourself: DETR panoptic segmentation of {name}", "", _about(t, name), "",
             "Open this photo in the app to work out the answers: every one is read from this photo's trace.", ""]
    for st in STEPS:
        lines += [f"## Step {st.number} · {st.title}", ""]
        for x in (x for x in qs if x.step == st.number):
            lines.append(f"**{_number(qs, x)}** {x.text}")
            lines.append("")
            if x.kind == CHOICE:
                lines += [f"- {LETTERS[i]}. {opt}" for i, opt in enumerate(x.options)]
            else:
                lines.append("Answer (a number): ____________")
            lines.append("")
    return "\n".join(lines)


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_answer_key(t, name: str = "photo") -> str:
    """The answer key (a table: question, answer, why, where the app shows it), then the curriculum's
    questions answered for this photo with the verdicts."""
    qs = questions(t)
    lines = [f"# Answer key: DETR panoptic segmentation of {name}", "", _about(t, name), "",
             "| question | id | answer | why | see |", "|---|---|---|---|---|"]
    for x in qs:
        lines.append(f"| {_number(qs, x)} | {x.id} | {_cell(x.answer_label)} | {_cell(x.explanation)} | "
                     f"{_cell(x.pointer)} |")
    lines += ["", "## The curriculum, answered for this photo", ""]
    for a in answers(t):
        lines += [f"**{a.key}.** *{a.quote}*", "", f"- Answered on step {a.step} · {a.step_title}: {a.answer}"]
        if a.verdict:
            lines.append(f"- Verdict: {a.verdict}")
        lines.append("")
    return "\n".join(lines)


def write(t, out, name: str = "photo") -> dict:
    """Write worksheet.md, answer_key.md and questions.json into folder `out`; returns their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"worksheet": out / "worksheet.md", "answer_key": out / "answer_key.md",
             "questions": out / "questions.json"}
    paths["worksheet"].write_text(render_worksheet(t, name), encoding="utf-8")
    paths["answer_key"].write_text(render_answer_key(t, name), encoding="utf-8")
    paths["questions"].write_text(json.dumps([x.to_dict() for x in questions(t)], indent=1), encoding="utf-8")
    return paths


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m detr_viz quiz",
                                description="Write a check-yourself worksheet and its answer key for one photo.")
    p.add_argument("image", help="image file (JPEG, PNG, WebP, BMP, TIFF, GIF)")
    p.add_argument("--model", default="auto",
                   help=f"registry name ({', '.join(MODELS)}), a checkpoint path, or 'auto' "
                        f"(default: {DEFAULT_MODEL} if its weights can be had, else {OFFLINE_MODEL})")
    p.add_argument("--checkpoint", help="local .pth file with the weights for --model (offline use)")
    p.add_argument("--categories", help="class names (a COCO-panoptic categories JSON or a config.json with "
                                        "id2label), as for the main command")
    p.add_argument("--threshold", type=float, default=None, help="score threshold of the merge (default: the model's)")
    p.add_argument("--out", default="worksheet", help="output folder (default: worksheet)")
    p.add_argument("--device", default=None, help="cpu, cuda or mps (default: best available)")
    return p


def main(argv, load_model) -> int:
    """The `quiz` subcommand. load_model(args) -> model: the command line's own model choice (registry name,
    checkpoint path or 'auto', with --checkpoint and --device), so both commands choose models alike."""
    args = _parser().parse_args(argv)
    try:                                        # a folder that cannot be written fails before the model runs
        Path(args.out).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        print(f"error: cannot write the worksheet to {args.out} ({e}). Choose another folder with --out.",
              file=sys.stderr)
        return 2
    try:
        model = load_model(args)
        t = trace(model, args.image, threshold=args.threshold)
    except (WeightsUnavailable, ImageError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        paths = write(t, args.out, Path(args.image).name)
    except OSError as e:
        print(f"error: cannot write the worksheet to {args.out} ({e}). Choose another folder with --out.",
              file=sys.stderr)
        return 2
    print(f"wrote {paths['worksheet']} ({len(questions(t))} questions), {paths['answer_key']} and "
          f"{paths['questions']}")
    return 0
