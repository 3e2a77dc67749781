"""Screenshots of app pages for the README, taken in Debian Chromium with Playwright.

    python scripts/screenshots.py [--image toy:scene1.png] [--model toyworld] [--pages Box_attention Upsampling Merge]

Starts `streamlit run app.py` on 127.0.0.1, opens each page with the chosen image and model in the
URL, waits for the app to finish, and writes docs/screenshots/<page>.jpg (a tall window, so most of
the page is in the picture: full-page screenshots do not scroll Streamlit's main container).
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_idle(page, timeout_s: float = 300) -> None:
    page.wait_for_selector('[data-testid="stApp"]', timeout=timeout_s * 1000)
    time.sleep(1.0)
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=timeout_s * 1000)
    time.sleep(1.5)           # images and charts finish drawing


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", default="toy:scene1.png")
    ap.add_argument("--model", default="toyworld")
    ap.add_argument("--pages", nargs="*", default=["", "Box_attention", "Upsampling", "Merge"])
    ap.add_argument("--height", type=int, default=2400)
    ap.add_argument("--out", default=str(REPO / "docs" / "screenshots"))
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                             "--server.address", "127.0.0.1", "--server.port", str(port),
                             "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
                            cwd=REPO, env={**os.environ, "DETR_VIZ_DEVICE": "cpu"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(base + "/_stcore/health", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        query = urllib.parse.urlencode({"image": args.image, "model": args.model})
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": args.height})
            page.goto(f"{base}/?{query}")           # home first: traces once, then pages reuse it
            wait_idle(page)
            for name in args.pages:
                page.goto(f"{base}/{name}?{query}")
                wait_idle(page)
                path = out / f"{name.lower() or 'home'}.jpg"
                page.screenshot(path=str(path), type="jpeg", quality=85)
                print("wrote", path)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    return 0


if __name__ == "__main__":
    sys.exit(main())
