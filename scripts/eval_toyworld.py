#!/usr/bin/env python
"""Panoptic Quality of the toy-world model on the fixed held-out scenes.

    python scripts/eval_toyworld.py                       # shipped model, 200 held-out test scenes
    python scripts/eval_toyworld.py --checkpoint runs/toyworld/toyworld.pt --n 200
    python scripts/eval_toyworld.py --split val --sweep   # choose the merge threshold (validation!)

Runs the model and the app's panoptic merge (`detr_viz.postprocess.postprocess_panoptic`, at the
config's `threshold` unless --threshold is given) on scenes `TEST_SEED0 + i` (never used for
training or for choosing settings), then computes PQ / SQ / RQ by the COCO panoptic definition
(`detr_viz.metrics`). The last line printed is `PQ <value>`.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# Idle OpenMP threads sleep instead of spinning: on a shared 2-core machine spinning threads made
# a training step up to 6x slower when other processes were running.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from detr_viz.config import DETRConfig  # noqa: E402
from detr_viz.metrics import format_table  # noqa: E402
from detr_viz.segmentation import DETRPanoptic  # noqa: E402
from detr_viz.toyworld import DEFAULT_SIZE, test_scenes, toyworld_categories, validation_scenes  # noqa: E402
from detr_viz.toyworld.train import panoptic_eval, predict_outputs  # noqa: E402

SHIPPED = ROOT / "assets" / "models" / "toyworld.pt"
SWEEP = (0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)


def load_model(path: Path) -> DETRPanoptic:
    """The checkpoint through the app's loader (safe `weights_only` load), eval mode, CPU."""
    try:
        from detr_viz.checkpoint import load_checkpoint
        state, cfg_dict = load_checkpoint(path)
    except ImportError:                                    # library without weights.py
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        state = {k: v.float() if v.is_floating_point() else v for k, v in ckpt["model"].items()}
        cfg_dict = ckpt["config"]
    model = DETRPanoptic(DETRConfig.from_dict(cfg_dict))
    model.load_state_dict(state)
    return model.eval()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, default=SHIPPED)
    p.add_argument("--n", type=int, default=200, help="number of scenes (default 200)")
    p.add_argument("--split", choices=("test", "val"), default="test",
                   help="test: the held-out scenes (default); val: the validation scenes")
    p.add_argument("--size", type=int, default=DEFAULT_SIZE, help="scene size (the training size)")
    p.add_argument("--threshold", type=float, help="merge score threshold (default: the config's)")
    p.add_argument("--sweep", action="store_true", help="also print PQ for several thresholds")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    t0 = time.time()
    model = load_model(args.checkpoint)
    threshold = args.threshold if args.threshold is not None else model.config.threshold
    scenes = (test_scenes if args.split == "test" else validation_scenes)(args.n, args.size)
    outputs = predict_outputs(model, scenes)
    thresholds = sorted(set(SWEEP) | {threshold}) if args.sweep else [threshold]
    results = panoptic_eval(outputs, scenes, thresholds)
    cats = toyworld_categories()
    names = {c.id: c.name for c in cats.used()}

    print(f"checkpoint {args.checkpoint} | {args.n} {args.split} scenes of {args.size}x{args.size} | "
          f"{time.time() - t0:.0f} s")
    if args.sweep:
        print("threshold sweep:  " + "  ".join(
            f"{t:g}: {r['all']['pq']:.1f} (th {r['things']['pq']:.1f} st {r['stuff']['pq']:.1f})"
            for t, r in results.items()))
    summary = results[float(threshold)]
    print(f"merge threshold {threshold:g}")
    print(format_table(summary, names))
    print(f"PQ {summary['all']['pq']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
