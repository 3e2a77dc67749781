#!/usr/bin/env python
"""Train the toy-world DETR panoptic model (CPU or GPU), resumable, reproducible by seed.

    python scripts/train_toyworld.py --out runs/toyworld            # the shipped recipe
    python scripts/train_toyworld.py --out runs/toyworld            # again: resumes from the checkpoint
    python scripts/train_toyworld.py --out runs/toyworld --release assets/models/toyworld.pt
    python scripts/train_toyworld.py --plot runs/toyworld/log.jsonl --plot-out docs/toyworld_training.png

Writes <out>/log.jsonl (one JSON record per log line: losses, images/s; validation PQ by merge
threshold), <out>/checkpoint.pt (every few minutes) and, at the end, <out>/toyworld.pt (float16
weights + config + meta) and, with --release, a copy with its .sha256 next to it.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from dataclasses import fields
from pathlib import Path

# Idle OpenMP threads sleep instead of spinning: on a shared 2-core machine spinning threads made
# a training step up to 6x slower when other processes were running. (Set before torch is imported.)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from detr_viz.hashing import sha256_file  # noqa: E402
from detr_viz.toyworld.config import TrainConfig, attention_scale, toyworld_model_config  # noqa: E402
from detr_viz.toyworld.train import train  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]      # default places of the run folder and the plot


def plot_log(log_path: Path, out_png: Path, threshold: float | None = None) -> None:
    """Loss curves and validation PQ (overall / things / stuff) against training time."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from detr_viz.toyworld.evaluate import DETECTION_STAT_THRESHOLD

    recs = [json.loads(line) for line in open(log_path)]
    train_recs = [r for r in recs if r["type"] == "train"]
    val_recs = [r for r in recs if r["type"] == "val" and "pq" in r]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    t = [r["minutes"] for r in train_recs]
    for key, label in (("ce", "class CE"), ("l1", "box L1"), ("giou", "box GIoU"),
                       ("focal", "mask focal"), ("dice", "mask dice")):
        pts = [(r["minutes"], r[key]) for r in train_recs if key in r]
        if pts:
            ax1.plot(*zip(*pts), label=label, lw=1)
    if t:
        ax1.set_yscale("log")
    ax1.set_xlabel("training time (min)")
    ax1.set_title("training losses (last decoder layer)")
    ax1.legend(fontsize=8)
    if val_recs:
        thr = str(threshold) if threshold is not None else None
        def pick(r):
            if thr in r["pq"]:
                return r["pq"][thr]
            return max(r["pq"].values(), key=lambda v: v["all"]["pq"])
        for group, style in (("all", "-"), ("things", "--"), ("stuff", ":")):
            ax2.plot([r["minutes"] for r in val_recs], [pick(r)[group]["pq"] for r in val_recs],
                     style, marker="o", ms=3, label=f"PQ {group}")
    det_recs = [r for r in recs if r["type"] == "val" and "det_recall_cls" in r]
    if det_recs:
        ax2.plot([r["minutes"] for r in det_recs], [100 * r["det_recall_cls"] for r in det_recs],
                 color="gray", marker=".", lw=0.8,
                 label=f"GT segments whose class is found\n(score > {DETECTION_STAT_THRESHOLD:g}; no masks yet)")
    ax2.set_ylim(0, 100)
    ax2.axhline(70, color="gray", lw=0.5)
    if t:
        ax2.set_xlim(ax1.get_xlim())
    ax2.set_xlabel("training time (min)")
    ax2.set_title("validation (60 scenes): PQ" + (f" at merge threshold {threshold:g}" if threshold is not None else ""))
    ax2.legend(fontsize=8)
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    det_end = next((r["minutes"] for r in train_recs if r.get("phase") == "mask"), None)
    if det_end is not None:
        for ax in (ax1, ax2):
            ax.axvline(det_end, color="k", lw=0.6, ls="--")
        ax2.text(det_end, 3, " masks start", fontsize=8)
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    print(f"wrote {out_png}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "toyworld", help="run folder")
    p.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint in --out")
    p.add_argument("--release", type=Path, help="also copy the final model here (+ .sha256)")
    p.add_argument("--steps", type=int, help="stop after this many steps (smoke tests)")
    p.add_argument("--model", action="append", default=[], metavar="KEY=VALUE",
                   help="override a DETRConfig field, e.g. --model dilation=false")
    p.add_argument("--finalize", type=Path, metavar="MODEL_PT",
                   help="choose the merge threshold of a trained model on validation scenes, "
                        "store it in the config and write --release (no training)")
    p.add_argument("--val-scenes", type=int, default=300, help="validation scenes for --finalize")
    p.add_argument("--test-pq", type=str, help="with --finalize: JSON of held-out PQ numbers to store in meta")
    p.add_argument("--plot", type=Path, help="only plot this log.jsonl and exit")
    p.add_argument("--plot-out", type=Path, default=ROOT / "docs" / "toyworld_training.png")
    p.add_argument("--plot-threshold", type=float)
    for f in fields(TrainConfig):
        if f.name == "val_thresholds":
            continue
        kind = {bool: _bool, int: int, float: float, str: str}[type(f.default)]
        p.add_argument("--" + f.name.replace("_", "-"), type=kind, default=None,
                       help=f"(default {f.default})")
    args = p.parse_args(argv)

    if args.plot:
        plot_log(args.plot, args.plot_out, args.plot_threshold)
        return 0
    if args.finalize:
        if not args.release:
            p.error("--finalize needs --release")
        finalize(args.finalize, args.release, args.val_scenes, args.test_pq)
        return 0
    overrides = {f.name: getattr(args, f.name) for f in fields(TrainConfig)
                 if f.name != "val_thresholds" and getattr(args, f.name) is not None}
    tc = TrainConfig(**overrides)
    model_kw = dict(_parse_kv(kv) for kv in args.model)
    cfg = toyworld_model_config(**model_kw)
    if "bbox_attention_scale" not in model_kw:          # M x h x w at the training size
        cfg = cfg.replace(bbox_attention_scale=attention_scale(cfg.nheads, tc.size, cfg.stride))
    print(f"model: {cfg}\ntraining: {tc}", flush=True)
    out_model = args.out / "toyworld.pt"
    train(cfg, tc, args.out, resume=not args.fresh, release_path=out_model, stop_after_steps=args.steps)
    print(f"wrote {out_model} ({out_model.stat().st_size / 1e6:.2f} MB)")
    if args.release:
        args.release.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out_model, args.release)
        write_sha256(args.release)
    return 0


def write_sha256(path: Path) -> None:
    """<file name>.sha256 next to the file: "<hex digest>  <file name>" (what detr_viz.download reads
    when the registry entry has no hash of its own)."""
    digest = sha256_file(path)
    path.with_name(path.name + ".sha256").write_text(f"{digest}  {path.name}\n")
    print(f"released {path} ({path.stat().st_size:,} bytes) sha256 {digest}")


def finalize(src: Path, dst: Path, n_val: int, test_pq: str | None) -> None:
    """Pick the merge threshold with the best validation PQ and store it in the checkpoint config.

    Uses validation scenes (seeds VAL_SEED0 + i), never the held-out test scenes."""
    from detr_viz import create_model
    from detr_viz.toyworld.config import THRESHOLD_SWEEP
    from detr_viz.toyworld.evaluate import panoptic_eval, predict_outputs
    from detr_viz.toyworld.release import release_meta, save_release
    from detr_viz.toyworld.scenes import validation_scenes

    model = create_model(src, device="cpu")
    scenes = validation_scenes(n_val, model.config.input_size)
    outputs = predict_outputs(model, scenes)
    sweep = panoptic_eval(outputs, scenes, THRESHOLD_SWEEP)
    for t, r in sweep.items():
        print(f"val threshold {t:g}: PQ {r['all']['pq']:.2f} things {r['things']['pq']:.2f} "
              f"stuff {r['stuff']['pq']:.2f}")
    best = max(sweep, key=lambda t: sweep[t]["all"]["pq"])
    print(f"chosen threshold {best:g} (best validation PQ on {n_val} scenes)")
    meta = release_meta(src)
    meta["threshold_choice"] = f"best PQ on {n_val} validation scenes (seeds VAL_SEED0 + i)"
    meta["val_PQ"] = {str(t): round(r["all"]["pq"], 2) for t, r in sweep.items()}
    if test_pq:
        meta.update(json.loads(test_pq))
    dst.parent.mkdir(parents=True, exist_ok=True)
    save_release(model, model.config.replace(threshold=float(best)), dst, meta)
    write_sha256(dst)


def _bool(s: str) -> bool:
    if s.lower() in ("1", "true", "yes", "on"):
        return True
    if s.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"not a boolean: {s}")


def _parse_kv(kv: str):
    key, _, value = kv.partition("=")
    for conv in (int, float, _bool):
        try:
            return key, conv(value)
        except (ValueError, argparse.ArgumentTypeError):
            pass
    return key, value


if __name__ == "__main__":
    sys.exit(main())
