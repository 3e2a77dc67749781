"""Class benchmark: one app server (toyworld model), one teacher and N followers, all real browser
pages (headless Debian Chromium through Playwright, one browser context per student: each is a
real Streamlit session with its websocket, its polling fragment and its page runs).

    python benchmarks/class_bench.py [--followers 30] [--changes 6] [--model toyworld]

Measures:
- follow latency: from the teacher's click (page change, or query change) until each follower's
  page shows it (the step's title, or the query in its picker): p50 / p95 / max over all
  followers and changes;
- the server's CPU seconds per teacher change (utime+stime of the server process, /proc, from the
  click until every follower shows it, the followers' own page runs included);
- the server's RSS with all followers connected (VmRSS);
- the time from "Ask the class" until every follower has answered and the teacher's screen shows
  the count.
The followers' pages are polled from this process every ~50 ms, so the latencies are
upper bounds within that. Chromium runs on the same 2 cores as the server: the figures include
that load (a real class's browsers run on their own devices).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

CLK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK          # utime + stime


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def wait_all(pages, shown, timeout_s: float = 120.0) -> list[float]:
    """Seconds until shown(page) is true, for each page (polled round-robin)."""
    t0 = time.perf_counter()
    done: dict[int, float] = {}
    while len(done) < len(pages) and time.perf_counter() - t0 < timeout_s:
        for i, p in enumerate(pages):
            if i not in done:
                try:
                    if shown(p):
                        done[i] = time.perf_counter() - t0
                except Exception:
                    pass
        time.sleep(0.05)
    return [done.get(i, float("inf")) for i in range(len(pages))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--followers", type=int, default=30)
    ap.add_argument("--changes", type=int, default=6, help="teacher changes (page and query, alternating)")
    ap.add_argument("--model", default="toyworld")
    args = ap.parse_args()
    os.chdir(REPO)
    import subprocess

    from test_e2e_lesson import app_server, browser, go, heading, join_lesson, start_lesson

    env = {"DETR_VIZ_APP_MODEL": args.model}
    with app_server(env, "bench") as url, browser() as b:
        pid = int(subprocess.run(["pgrep", "-n", "-f", f"streamlit run app.py.*{url.rsplit(':', 1)[1]}"],
                                 capture_output=True, text=True).stdout.split()[0])

        def new_page(path=""):
            p = b.new_context(viewport={"width": 1280, "height": 900}).new_page()
            p.set_default_timeout(180_000)
            p.goto(url + path)
            p.get_by_text("Teach a lesson / Join a lesson").wait_for()
            return p
        teacher = new_page()
        code = start_lesson(teacher)
        followers = []
        t_join = time.perf_counter()
        for _ in range(args.followers):
            p = new_page()
            join_lesson(p, code)
            followers.append(p)
        print(f"{args.followers} followers joined lesson {code} in {time.perf_counter() - t_join:.0f} s", flush=True)
        go(teacher, "3 · Decoder")                  # warm-up: the first visit of page 3 (not timed)
        heading(teacher, 3).wait_for()
        wait_all(followers, lambda p: heading(p, 3).is_visible(), 300)
        time.sleep(3)
        rss = rss_mb(pid)
        lat, cpu = [], []
        pages = [(5, "5 · Concat with Res5"), (3, "3 · Decoder")]
        for i in range(args.changes):
            c0 = cpu_s(pid)
            if i % 2 == 0:                           # a page change
                step, label = pages[(i // 2) % 2]
                go(teacher, label)
                got = wait_all(followers, lambda p, s=step: heading(p, s).is_visible())
                what = f"page -> {step}"
            else:                                    # a query change on the current page
                picker = teacher.get_by_test_id("stSelectbox").filter(has_text="Query").first
                picker.click()
                teacher.get_by_role("option").nth(1 + i % 3).click()
                time.sleep(0.3)
                chosen = picker.inner_text().splitlines()[-1].split(":")[0]
                got = wait_all(followers, lambda p, c=chosen + ":": c in p.get_by_test_id("stSelectbox").filter(
                    has_text="Query").first.inner_text())
                what = f"{chosen}"
            cpu.append(cpu_s(pid) - c0)
            lat += got
            print(f"change {i + 1} ({what}): max {max(got):.2f} s, server CPU {cpu[-1]:.2f} s", flush=True)
            time.sleep(1.5)
        rss = max(rss, rss_mb(pid))
        # class answers
        teacher.get_by_role("button", name="Ask the class").click()
        t0 = time.perf_counter()
        for p in followers:
            p.locator('[data-testid="stRadio"] label').first.click()
            p.get_by_role("button", name="Send my answer").click()
        teacher.get_by_text(f"{args.followers} answers").first.wait_for(timeout=120_000)
        answered = time.perf_counter() - t0
        rss = max(rss, rss_mb(pid))
    lat_sorted = sorted(lat)
    p95 = lat_sorted[min(len(lat_sorted) - 1, int(0.95 * len(lat_sorted)))]
    print(f"\nfollowers: {args.followers} (headless Chromium pages), model {args.model}, {args.changes} changes", flush=True)
    print(f"follow latency: p50 {statistics.median(lat):.2f} s, p95 {p95:.2f} s, max {max(lat):.2f} s", flush=True)
    print(f"server CPU per teacher change: {statistics.mean(cpu):.2f} s (max {max(cpu):.2f} s)", flush=True)
    print(f"server RSS with {args.followers} followers: {rss:.0f} MB", flush=True)
    print(f"all {args.followers} answered and the teacher sees the count: {answered:.1f} s after 'Ask the class'", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
