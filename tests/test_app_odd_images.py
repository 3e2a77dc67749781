"""Every page on degenerate photos (1 x 1 pixel, a 4000 x 1 strip, a 1 x 3000 strip): no
exception, no error message, and the pictures stay of a sane size (a thin strip once asked for a
picture of 720 x 960,000 pixels)."""
import io
import os

import pytest
from app_helpers import REPO, app
from PIL import Image

from ui import state

PAGES = ["app.py"] + sorted(f"pages/{p}" for p in os.listdir(REPO / "pages") if p.endswith(".py"))


@pytest.fixture(autouse=True)
def tiny_model_app(monkeypatch):
    monkeypatch.setenv(state.APP_MODEL_ENV, state.TINY_RANDOM)


def png(size, color) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize("size", [(1, 1), (4000, 1), (1, 3000)])
def test_every_page_on_a_degenerate_photo(size):
    at = app().run()
    at.file_uploader[0].set_value(("odd.png", png(size, (40, 120, 200)), "image/png")).run()
    assert at.session_state[state.K_IMAGE_NAME] == "odd.png"
    for page in PAGES:
        at.switch_page(page).run()
        assert not at.exception, (page, [e.value[:300] for e in at.exception])
        assert not at.error, (page, [e.value[:300] for e in at.error])
