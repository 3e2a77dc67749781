"""Check yourself in a real browser (Debian Chromium, Playwright, `streamlit run app.py` with the tiny
random model): answer one question of step 4, see the feedback at once, and find it in the score on
the Questions page."""
import os
import re
import subprocess
import sys
import time
import urllib.request

import pytest
from browser_support import CHROMIUM, CHROMIUM_ARGS, require_browser
from conftest import REPO

from ui import page as ui_page

require_browser()
pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "DETR_VIZ_APP_MODEL": "tiny-random", "DETR_VIZ_DEVICE": "cpu"}
    log = open(tmp_path_factory.mktemp("streamlit") / "streamlit.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.address",
         "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false",
         "--server.fileWatcherType", "none"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                if urllib.request.urlopen(url + "/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("streamlit did not start within 60 s")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def browser_page(server):
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        yield page
        browser.close()


def wait_idle(page, timeout: float = 180.0) -> None:
    page.wait_for_selector('[data-testid="stApp"]', timeout=timeout * 1000)
    time.sleep(0.6)
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=timeout * 1000)
    time.sleep(0.3)


def main_text(page) -> str:
    return page.locator('[data-testid="stMain"]').inner_text()


def test_answer_a_question_and_see_the_feedback_and_the_score(browser_page, server):
    page = browser_page
    page.goto(server + ui_page.url_of(ui_page.PAGES[4][0]) + "?image=toy:scene1.png")
    wait_idle(page)
    assert "Check yourself" in main_text(page)
    assert "Where to look:" not in main_text(page)                 # no feedback before an answer
    radio = page.locator('[data-testid="stRadio"]').filter(has_text="maps of").first    # question 4.1
    radio.scroll_into_view_if_needed()
    radio.locator('[role="radiogroup"] label').first.click()          # option A
    wait_idle(page)
    page.get_by_role("button", name=re.compile(r"^Check$")).first.click()     # 4.1's Check, the first
    wait_idle(page)
    text = main_text(page)
    assert "Where to look: Step 4" in text, text[-2000:]
    alerts = page.locator('[data-testid="stAlertContentSuccess"], [data-testid="stAlertContentWarning"]')
    feedback = [a for a in alerts.all_inner_texts() if re.search(r"^\W*(\w+\W+)?(Right\.|Not quite:)", a)]
    assert len(feedback) == 1, alerts.all_inner_texts()         # (the alert may start with its icon's name)
    assert page.locator('[data-testid="stException"]').count() == 0

    link = page.locator('[data-testid="stSidebar"] [data-testid="stPageLink-NavLink"]').filter(has_text="Questions")
    link.first.click()
    wait_idle(page)
    right = 1 if "Right." in feedback[0][:40] else 0
    assert f"{right} of 1 answered" in main_text(page)
