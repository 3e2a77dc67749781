"""End to end in a real browser: Debian Chromium driven by Playwright against `streamlit run app.py`.

Starts the server on 127.0.0.1 (tiny random model, so it is fast), runs a sample image, visits
every page through the sidebar, clicks a pixel on pages 2 and 7, checks that no page shows an
error, and saves a screenshot of each page under tests/artifacts/screenshots/.
"""
import shutil
import time
from pathlib import Path

import pytest
from browser_support import CHROMIUM, require_browser, streamlit_server
from browser_support import CHROMIUM_ARGS as ARGS
from conftest import REPO

from ui import page as ui_page

SHOTS = REPO / "tests" / "artifacts" / "screenshots"
# The sidebar menu's labels ("1 · Backbone", ..., "All tensors"), as ui.page defines them.
PAGES = [label for key, (_, label) in ui_page.PAGES.items() if key]

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module", autouse=True)
def _browser_here():
    """Skip where Chromium or Playwright is missing; fail instead in CI (DETR_VIZ_REQUIRE_BROWSER=1)."""
    require_browser()


@pytest.fixture(scope="module")
def server():
    if SHOTS.exists():                       # only this run's screenshots are counted (and kept)
        shutil.rmtree(SHOTS)
    SHOTS.mkdir(parents=True)
    with streamlit_server(REPO, SHOTS.parent / "streamlit.log", DETR_VIZ_APP_MODEL="tiny-random",
                          DETR_VIZ_DEVICE="cpu") as url:
        yield url


@pytest.fixture(scope="module")
def browser_page(server):
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        yield page
        browser.close()


def wait_idle(page, timeout: float = 180.0) -> None:
    """Wait until the script has finished a run (and has really started one before)."""
    page.wait_for_selector('[data-testid="stApp"]', timeout=timeout * 1000)
    time.sleep(0.6)         # right after an action the app can still read notRunning
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=timeout * 1000)
    time.sleep(0.3)


def assert_no_error(page, where: str) -> None:
    exc = page.locator('[data-testid="stException"]')
    assert exc.count() == 0, f"{where}: exception shown: {exc.first.inner_text()[:500]}"
    errors = page.locator('[data-testid="stAlertContentError"]')
    assert errors.count() == 0, f"{where}: error shown: {errors.first.inner_text()[:500]}"


def shot(page, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def click_image(page, frac=(0.5, 0.5)) -> None:
    """Click the first streamlit-image-coordinates picture at a fraction of its size."""
    frame_el = page.locator('iframe[title^="streamlit_image_coordinates"]').first
    frame_el.scroll_into_view_if_needed()
    frame = frame_el.content_frame
    img = frame.locator("img").first
    img.wait_for(timeout=60_000)
    box = img.bounding_box()
    img.click(position={"x": box["width"] * frac[0], "y": box["height"] * frac[1]})


def main_text(page) -> str:
    return page.locator('[data-testid="stMain"]').inner_text()


def goto_page(page, label: str) -> None:
    # the app's own sidebar menu (ui.page.menu): st.page_link entries
    link = page.locator('[data-testid="stSidebar"] [data-testid="stPageLink-NavLink"]').filter(has_text=label).first
    link.click()
    wait_idle(page)


def test_walk_every_page_and_click_pixels(browser_page, server):
    page = browser_page
    started = time.time()
    page.goto(server + "/?image=photo:coffee.png")
    wait_idle(page)
    assert_no_error(page, "home")
    assert "coffee.png" in main_text(page) or "coffee.png" in page.locator('[data-testid="stSidebar"]').inner_text()
    shots = [shot(page, "0_home")]
    menu = page.locator('[data-testid="stSidebar"] [data-testid="stPageLink-NavLink"]')
    labels = [t.strip().splitlines()[-1].strip() for t in menu.all_inner_texts()]     # after the icon's name
    assert [x for x in labels if x in {label for _, label in ui_page.PAGES.values()}] == \
        [label for _, label in ui_page.PAGES.values()], labels          # Home, 1..7, All tensors, What if, in order
    assert page.locator('[data-testid="stSidebarNavLink"]').count() == 0   # Streamlit's own list ("app") is off
    for i, label in enumerate(PAGES, start=1):
        goto_page(page, label)
        assert_no_error(page, label)
        text = main_text(page)
        if i <= 7:
            assert f"Step {i} of 7" in text, f"{label}: no step header"
        if i in (2, 7):                                   # Encoder and Merge: click a pixel
            before = text
            click_image(page, (0.3, 0.6))
            wait_idle(page)
            assert_no_error(page, f"{label} after click")
            assert main_text(page) != before, f"{label}: the click changed nothing"
        shots.append(shot(page, f"{i}_{ui_page.url_of(ui_page.PAGES[i][0]).strip('/').lower()}"))
    # this run's screenshots: one per page, each a new file (the folder is cleared when the server starts)
    assert len(set(shots)) == len(ui_page.PAGES) == 11
    assert all(p.is_file() and p.stat().st_mtime >= started - 1 for p in shots), shots


def test_uploads_in_the_browser_bad_file_then_grayscale(browser_page, server, tmp_path):
    """A text file named .jpg gives a clear message and the previous image stays; a grayscale PNG
    then replaces it."""
    page = browser_page
    page.goto(server + "/?image=photo:coffee.png")
    wait_idle(page)
    sidebar = page.locator('[data-testid="stSidebar"]')
    page.wait_for_function("document.querySelector('[data-testid=\"stSidebar\"]').innerText.includes('coffee.png')",
                           timeout=120_000)                  # traced first (the sidebar is drawn after it)
    bad = tmp_path / "holiday.jpg"
    bad.write_text("this is a text file, not a photo")
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').first.set_input_files(str(bad))
    page.locator('[data-testid="stAlertContentError"]').first.wait_for(timeout=60_000)
    wait_idle(page)
    assert page.locator('[data-testid="stException"]').count() == 0
    message = page.locator('[data-testid="stAlertContentError"]').first.inner_text()
    assert "holiday.jpg" in message and "not an image" in message, message
    # the previous image stays (waited for: the sidebar is redrawn after the message)
    page.wait_for_function("document.querySelector('[data-testid=\"stSidebar\"]').innerText.includes('coffee.png')",
                           timeout=60_000)
    assert "coffee.png" in sidebar.inner_text() and "holiday.jpg" not in sidebar.inner_text()
    shot(page, "upload_bad_file")

    from PIL import Image
    gray = tmp_path / "gradient.png"
    Image.linear_gradient("L").resize((96, 64)).save(gray)
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').first.set_input_files(str(gray))
    page.wait_for_function("document.querySelector('[data-testid=\"stSidebar\"]').innerText.includes('gradient.png')",
                           timeout=120_000)
    wait_idle(page)
    assert_no_error(page, "after a grayscale upload")


def test_deep_link_to_a_page_on_a_fresh_session(browser_page, server):
    page = browser_page
    page.context.clear_cookies()
    page.goto(server + "/Merge")
    wait_idle(page)
    assert_no_error(page, "deep link to Merge")
    assert "Step 7 of 7" in main_text(page)
