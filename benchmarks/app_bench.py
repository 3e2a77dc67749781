"""Time to render each page (AppTest run) on CPU once the trace exists. Goal: every page under 1 s.

    python benchmarks/app_bench.py [--model toyworld|tiny-random|detr-r50-panoptic] [--repeats 3]

One AppTest session: the home page runs first (it traces the default sample image: not timed),
then every page is switched to and re-run `--repeats` times; the best and the first (cold:
first visit, the pictures cached on the trace are made) times are printed.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="app model key (default: the app's default)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if args.model:
        os.environ["DETR_VIZ_APP_MODEL"] = args.model
    os.chdir(REPO)
    from streamlit.testing.v1 import AppTest

    from ui.page import PAGES

    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=600)
    t0 = time.perf_counter()
    at.run()
    trace_s = time.perf_counter() - t0
    if at.exception:
        print("home page failed:", at.exception[0].message)
        return 1
    model = at.session_state["model_key"]
    print(f"model {model}; first home run (loads the model and traces the default image): {trace_s:.2f} s")
    print(f"{'page':28}{'first (s)':>10}{'best (s)':>10}  errors")
    worst = 0.0
    for path, label in PAGES.values():
        times = []
        for i in range(args.repeats + 1):
            t0 = time.perf_counter()
            if i == 0:
                at.switch_page(path)
            at.run()
            times.append(time.perf_counter() - t0)
        errs = len(at.exception) + len(at.error)
        best = min(times[1:]) if len(times) > 1 else times[0]
        worst = max(worst, best)
        print(f"{label:28}{times[0]:10.2f}{best:10.2f}  {errs}")
    print(f"slowest page (best of {args.repeats}): {worst:.2f} s  (goal: < 1 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
