"""Shared set-up of the browser tests: Debian Chromium driven by Playwright.

A plain local run without Chromium or Playwright skips them and says why. Where they must run
(`DETR_VIZ_REQUIRE_BROWSER=1`, which `.ci/run` sets), a missing browser or Playwright fails instead,
so CI can never go green without its browser tests.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
REQUIRE_ENV = "DETR_VIZ_REQUIRE_BROWSER"


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if not Path(CHROMIUM).exists():
        return f"Debian chromium is not installed ({CHROMIUM}; apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed (pip install -r requirements.txt)"
    return None


def require_browser() -> None:
    """Skip (locally) or fail (where required) when the browser tests cannot run."""
    why = browser_missing()
    if why is None:
        return
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"browser tests must run here ({REQUIRE_ENV}=1) but cannot: {why}", pytrace=False)
    pytest.skip(why)
