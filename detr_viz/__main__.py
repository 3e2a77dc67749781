"""Command line: python -m detr_viz IMAGE [--model NAME|PATH] [--checkpoint PATH] [--categories FILE]
    [--threshold T] [--out DIR]

Runs one traced forward pass, prints every stage with its shape, and writes the panoptic PNG,
the segments JSON and the trace (.npz) to DIR.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from . import ImageError, WeightsUnavailable, trace
from .cli_models import add_model_arguments, load_model
from .device import device_name
from .stages import STEPS, stage


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m detr_viz",
                                description="Trace DETR panoptic segmentation on one image.")
    add_model_arguments(p)
    p.add_argument("--queries", type=int, nargs="*", default=(),
                   help="extra query indices to run through the mask head")
    p.add_argument("--out", default="detr_viz_out", help="output folder (default: detr_viz_out)")
    p.add_argument("--no-npz", action="store_true", help="do not write the trace .npz")
    return p


def _describe(model) -> str:
    """What was read: the file's format, where the architecture and the class names came from."""
    src, cats, cfg = getattr(model, "source", {}), model.categories, model.config
    lines = [f"  {src.get('format', 'model')}: architecture from {src.get('architecture', 'the registry')} "
             f"({cfg.backbone}{' DC5' if cfg.dilation else ''}, {cfg.num_queries} queries, {cfg.num_classes} classes)",
             f"  classes: {cats.source}"]
    if cats.isthing_guessed:
        lines.append("  note: thing/stuff is a guess (every class a thing); give --categories FILE to set it")
    return "\n".join(lines)


def _progress(step: int, text: str) -> None:
    print(f"  step {step}/7  {text} ...", file=sys.stderr, flush=True)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["quiz"]:                    # python -m detr_viz quiz IMAGE ...: the worksheet
        from . import worksheet
        return worksheet.main(argv[1:])
    args = _parser().parse_args(argv)
    try:
        model = load_model(args)
    except (WeightsUnavailable, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"model {model.model_name} ({model.weights_source}) on {device_name(next(model.parameters()).device)}",
          file=sys.stderr)
    print(_describe(model), file=sys.stderr)
    t0 = time.perf_counter()
    try:
        t = trace(model, args.image, threshold=args.threshold, queries=list(args.queries), progress=_progress)
    except (ImageError, ValueError, IndexError) as e:      # unusable image, bad --queries
        print(f"error: {e}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - t0

    print(format_table(t))
    out = Path(args.out)
    stem = Path(args.image).stem
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{stem}_panoptic.png").write_bytes(t.panoptic.png_bytes())
        (out / f"{stem}_segments.json").write_text(t.panoptic.segments_json())
        if not args.no_npz:
            t.to_npz(out / f"{stem}_trace.npz")
    except OSError as e:
        print(f"error: cannot write the results to {out} ({e}). Choose another folder with --out.", file=sys.stderr)
        return 2
    segs = ", ".join(f"{s['name']} ({s['score']:.2f})" for s in t.panoptic.segments) or "none"
    print(f"\n{len(t.panoptic.segments)} segments at threshold {t.threshold}: {segs}")
    print(f"traced in {elapsed:.2f} s; wrote {out}/{stem}_panoptic.png, _segments.json"
          + ("" if args.no_npz else ", _trace.npz"))
    return 0


def format_table(t) -> str:
    """Stage / shape table grouped by the seven steps, with the time each block took."""
    lines = [f"image {t.pre.original_size[1]}x{t.pre.original_size[0]} -> network input "
             f"{t.pre.processed_size[1]}x{t.pre.processed_size[0]} (W x H); mask head ran for queries "
             f"{t.mask_queries}"]
    current = None
    for name in t.names():
        st = stage(name, t.config)
        if st.step != current:
            current = st.step
            lines.append(f"\nStep {st.step}/7  {STEPS[st.step - 1].title}")
        lines.append(f"  {name:<32} {' x '.join(map(str, t.shape(name))):<24} {st.description}")
    lines.append("\nStep 7/7  " + STEPS[6].title)
    lines.append(f"  kept queries {list(map(int, t.panoptic.kept))}; id map {t.panoptic.id_map.shape[1]}x"
                 f"{t.panoptic.id_map.shape[0]}")
    lines.append("\nTime per block (s): " + json.dumps({k: round(v, 3) for k, v in t.timings.items()}))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
