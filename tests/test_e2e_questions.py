"""Check yourself in a real browser (Debian Chromium, Playwright, `streamlit run app.py` with the tiny
random model): answer one question of step 4, see the feedback at once, and find it in the score on
the Questions page."""
import re

import pytest
from browser_support import require_browser, streamlit_server
from conftest import REPO
from test_e2e_browser import browser_page, main_text, wait_idle  # noqa: F401  (browser_page: a fixture)

from ui import page as ui_page

require_browser()
pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with streamlit_server(REPO, tmp_path_factory.mktemp("streamlit") / "streamlit.log",
                          DETR_VIZ_APP_MODEL="tiny-random", DETR_VIZ_DEVICE="cpu") as url:
        yield url


def test_answer_a_question_and_see_the_feedback_and_the_score(browser_page, server):  # noqa: F811 (the fixture)
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
