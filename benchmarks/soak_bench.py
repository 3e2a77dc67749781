"""A class on one server: real browser sessions upload photos; the server's memory and the waits.

    python benchmarks/soak_bench.py --scenario turns            # 3 sessions taking turns, 20 uploads each
    python benchmarks/soak_bench.py --scenario burst            # 8 sessions at once, 5 uploads each
    python benchmarks/soak_bench.py --scenario turns --sessions 3 --uploads 3 --settle 20   # a short check

Starts `streamlit run app.py` with DETR_VIZ_APP_MODEL=r50-random (R50-sized random weights) and
DETR_VIZ_TRACE_MEMORY_MB=<--budget-mb>, drives Chromium sessions with Playwright (one browser context
per session), each uploading distinct 800 x 1066 photos on Home and then opening the pages given by
--pages (steps 4 and 7 by default). Prints the server's peak RSS, its RSS `--settle` seconds after
every session has closed (60 by default), the p95 page time, the mean time from an upload until its
pages are shown, and whether any page showed an exception or another session's image.
Needs playwright (Python) and /usr/bin/chromium.
"""
from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
MENU = '[data-testid="stSidebar"] [data-testid="stPageLink-NavLink"]'     # the app's own sidebar menu
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
PAGE_LABELS = {1: "1 · Backbone", 2: "2 · Encoder", 3: "3 · Decoder", 4: "4 · Box attention",
               5: "5 · Concat with Res5", 6: "6 · Upsampling", 7: "7 · Merge"}
TIMEOUT_MS = 15 * 60 * 1000             # a burst on 2 cores queues many R50 traces


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_of(pid: int) -> int:
    """Resident bytes of a process (VmRSS)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class RssSampler(threading.Thread):
    def __init__(self, pid: int, every: float = 0.5):
        super().__init__(daemon=True)
        self.pid, self.every, self.peak, self.samples = pid, every, 0, []
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            try:
                rss = rss_of(self.pid)
            except OSError:
                return
            self.peak = max(self.peak, rss)
            self.samples.append((time.time(), rss))
            self.stop.wait(self.every)


def start_server(port: int, budget_mb: int, model: str, workers: str | None) -> subprocess.Popen:
    env = dict(os.environ, DETR_VIZ_APP_MODEL=model, DETR_VIZ_TRACE_MEMORY_MB=str(budget_mb))
    if workers:
        env["DETR_VIZ_TRACE_WORKERS"] = workers
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
           "--server.address", "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false",
           "--server.fileWatcherType", "none"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    threading.Thread(target=_drain, args=(proc,), daemon=True).start()
    for _ in range(240):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("the server did not come up in 2 minutes")


SERVER_LOG: list[str] = []


def _drain(proc):
    for line in proc.stdout:
        SERVER_LOG.append(line.rstrip())


def make_photos(folder: Path, sessions: int, uploads: int) -> dict:
    """Distinct 800 x 1066 JPEGs: {(session, upload): path}."""
    base = np.asarray(Image.open(REPO / "assets" / "samples" / "nagasaki_boats.jpg").convert("RGB")
                      .resize((800, 1066)), dtype=np.int16)
    out = {}
    for s in range(sessions):
        for u in range(uploads):
            rng = np.random.default_rng(1000 * s + u)
            shift = rng.integers(-60, 60, 3)
            img = np.clip(base + shift + rng.integers(-20, 20, base.shape), 0, 255).astype(np.uint8)
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, format="JPEG", quality=90)
            path = folder / f"soak_s{s}_u{u}.jpg"
            path.write_bytes(buf.getvalue())
            out[s, u] = path
    return out


async def settle(page, text: str | None = None):
    """Wait until `text` (if given) is on the page and the script has finished running."""
    if text:
        await page.get_by_text(text, exact=False).first.wait_for(timeout=TIMEOUT_MS)
    await page.wait_for_selector(IDLE, timeout=TIMEOUT_MS)


async def session(browser, base: str, s: int, photos: dict, uploads: int, pages: list[int], stats: dict,
                  turn: asyncio.Lock | None):
    ctx = await browser.new_context(viewport={"width": 1400, "height": 1000})
    page = await ctx.new_page()
    await page.goto(base, timeout=TIMEOUT_MS)
    await settle(page, "The photo")
    for u in range(uploads):
        if turn is not None:
            await turn.acquire()
        try:
            path = photos[s, u]
            t0 = time.perf_counter()
            await page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(path))
            await page.locator('[data-testid="stSidebar"]').get_by_text(path.name).first.wait_for(timeout=TIMEOUT_MS)
            await page.wait_for_selector(IDLE, timeout=TIMEOUT_MS)
            stats["upload_to_home_s"].append(time.perf_counter() - t0)
            for k in pages:
                t1 = time.perf_counter()
                await page.locator(MENU, has_text=PAGE_LABELS[k]).first.click()
                await settle(page, f"Step {k} of 7")
                stats["page_s"].append(time.perf_counter() - t1)
                await check(page, path.name, stats)
            stats["upload_s"].append(time.perf_counter() - t0)
            await page.locator(MENU, has_text="Home").first.click()
            await settle(page, "The photo")
            await check(page, path.name, stats)
        finally:
            if turn is not None:
                turn.release()
                await asyncio.sleep(0.05)              # let the next session take its turn
    await ctx.close()


async def check(page, name: str, stats: dict):
    stats["exceptions"] += await page.locator('[data-testid="stException"]').count()
    sidebar = await page.locator('[data-testid="stSidebar"]').inner_text()
    if name not in sidebar:
        stats["wrong_image"] += 1


async def drive(base: str, args, photos: dict) -> dict:
    from playwright.async_api import async_playwright
    stats = {"upload_s": [], "upload_to_home_s": [], "page_s": [], "exceptions": 0, "wrong_image": 0}
    pages = [int(p) for p in args.pages.split(",") if p.strip()]
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        turn = asyncio.Lock() if args.scenario == "turns" else None
        await asyncio.gather(*(session(browser, base, s, photos, args.uploads, pages, stats, turn)
                               for s in range(args.sessions)))
        await browser.close()
    return stats


def p95(values: list[float]) -> float:
    return float(np.percentile(values, 95)) if values else float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", choices=["turns", "burst"], default="turns")
    ap.add_argument("--sessions", type=int, help="default: 3 (turns), 8 (burst)")
    ap.add_argument("--uploads", type=int, help="uploads per session; default: 20 (turns), 5 (burst)")
    ap.add_argument("--pages", default="4,7", help="steps opened after each upload (comma-separated, '' for none)")
    ap.add_argument("--budget-mb", type=int, default=2000)
    ap.add_argument("--model", default="r50-random")
    ap.add_argument("--workers", help="DETR_VIZ_TRACE_WORKERS for the server (default: the app's own)")
    ap.add_argument("--settle", type=float, default=60.0, help="seconds to wait after the sessions close")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    args.sessions = args.sessions or (3 if args.scenario == "turns" else 8)
    args.uploads = args.uploads or (20 if args.scenario == "turns" else 5)
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        photos = make_photos(Path(tmp), args.sessions, args.uploads)
        server = start_server(port, args.budget_mb, args.model, args.workers)
        sampler = RssSampler(server.pid)
        sampler.start()
        try:
            rss_start = rss_of(server.pid)
            t0 = time.perf_counter()
            stats = asyncio.run(drive(f"http://127.0.0.1:{port}/", args, photos))
            wall = time.perf_counter() - t0
            time.sleep(args.settle)
            rss_after = rss_of(server.pid)
        finally:
            sampler.stop.set()
            server.terminate()
            try:
                server.wait(20)
            except subprocess.TimeoutExpired:
                server.kill()
    errors = [line for line in SERVER_LOG if "Traceback" in line or "ERROR" in line]
    result = {"scenario": args.scenario, "sessions": args.sessions, "uploads": args.uploads, "pages": args.pages,
              "budget_mb": args.budget_mb, "model": args.model, "rss_start_mb": rss_start / 1e6,
              "peak_rss_mb": sampler.peak / 1e6, "rss_after_settle_mb": rss_after / 1e6, "settle_s": args.settle,
              "p95_page_s": p95(stats["page_s"]),
              "mean_upload_to_pages_s": statistics.mean(stats["upload_s"]) if stats["upload_s"] else float("nan"),
              "max_upload_to_pages_s": max(stats["upload_s"], default=float("nan")),
              "mean_upload_to_home_s": statistics.mean(stats["upload_to_home_s"]) if stats["upload_to_home_s"]
              else float("nan"),
              "exceptions": stats["exceptions"], "wrong_image": stats["wrong_image"],
              "server_errors": len(errors), "wall_s": wall}
    for k, v in result.items():
        print(f"{k:>24}: {v:.2f}" if isinstance(v, float) else f"{k:>24}: {v}")
    for line in errors[:10]:
        print("server:", line)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
