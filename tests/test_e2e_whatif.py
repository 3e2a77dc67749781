"""End to end in a real browser: on page 4, switch a head off and see the WHAT-IF badge and the
changed mask. The shipped toy model on toy scene 3 (query 0 is the star, whose attention is all in
head 7: with head 7 off its mask dissolves), served by `streamlit run app.py` on 127.0.0.1."""
import io

import numpy as np
import pytest
from browser_support import CHROMIUM, CHROMIUM_ARGS, require_browser, streamlit_server
from conftest import REPO
from PIL import Image
from test_e2e_browser import assert_no_error, main_text, wait_idle

from ui.whatif_view import BADGE, FRAME

pytestmark = pytest.mark.browser
SHOTS = REPO / "tests" / "artifacts" / "whatif"


@pytest.fixture(scope="module", autouse=True)
def browser_available():
    require_browser()        # (pytest.skip at import time would be a collection error, so here)


@pytest.fixture(scope="module")
def server():
    with streamlit_server(REPO, SHOTS / "streamlit.log", DETR_VIZ_APP_MODEL="toyworld", DETR_VIZ_DEVICE="cpu") as url:
        yield url


def pick(page, widget: str, label: str, option: str) -> None:
    """Open a selectbox / multiselect by its label and click an option."""
    box = page.locator(f'[data-testid="{widget}"]').filter(has_text=label).first
    box.scroll_into_view_if_needed()
    box.locator('[role="combobox"]').click()
    page.locator('[role="option"]').filter(has_text=option).first.click()
    page.keyboard.press("Escape")
    wait_idle(page)


def pixels(element) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(element.screenshot())).convert("RGB"))


def test_page4_a_head_off_shows_the_badge_and_the_changed_mask(server):
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(server + "/Box_attention?image=toy:scene3.png")
        wait_idle(page)
        assert_no_error(page, "page 4")
        assert "Step 4 of 7" in main_text(page) and BADGE not in main_text(page)
        pick(page, "stSelectbox", "Query to experiment on", "query 0:")
        pick(page, "stMultiSelect", "Heads switched off", "head 7")
        assert_no_error(page, "page 4, head 7 off")
        text = main_text(page)
        assert BADGE in text
        assert "With head 7 off, query 0 (star)'s mask keeps 0% of its 88 pixels" in text
        # the innermost block holding the badge and pictures: the bordered what-if box
        box = page.locator('[data-testid="stVerticalBlock"]').filter(has_text=BADGE) \
            .filter(has=page.locator('[data-testid="stImage"]')).last
        box.scroll_into_view_if_needed()
        images = box.locator('[data-testid="stImage"] img')
        assert images.count() == 4                      # traced, changed, compared, difference
        traced, changed = pixels(images.nth(0)), pixels(images.nth(1))
        page.screenshot(path=str(SHOTS / "page4_head7_off.png"))
        box.screenshot(path=str(SHOTS / "page4_whatif_box.png"))
        H, W = changed.shape[:2]
        edges = np.array([changed[H // 2, 2], changed[H // 2, W - 3], changed[2, W // 2], changed[H - 3, W // 2]])
        assert (np.abs(edges.astype(int) - FRAME).max(axis=1) <= 12).all(), edges     # the orange frame
        assert not (np.abs(traced[H // 2, 2].astype(int) - FRAME).max() <= 12)       # the model's output: none
        inner = changed[10:-10, 10:-10]
        h, w = min(inner.shape[0], traced.shape[0] - 20), min(inner.shape[1], traced.shape[1] - 20)
        # the star's pixels are dimmed now: the changed mask is darker than the traced one
        assert inner[:h, :w].mean() < traced[10:10 + h, 10:10 + w].mean() - 1
        browser.close()
