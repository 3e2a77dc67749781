"""Helpers for the AppTest suites: the app runs with the tiny random model (no weights needed)."""
import io

import numpy as np
from conftest import REPO
from PIL import Image
from streamlit.testing.v1 import AppTest

TIMEOUT = 180          # the first run of a session traces the image (a few seconds on 2 busy cores)


def app(path: str = "app.py", query_params: dict | None = None) -> AppTest:
    """An AppTest of a page file, opened directly (no prior state)."""
    at = AppTest.from_file(str(REPO / path), default_timeout=TIMEOUT)
    for k, v in (query_params or {}).items():
        at.query_params[k] = v
    return at


def assert_clean(at: AppTest) -> None:
    """No exception, and no st.error element, in the last run."""
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def texts(at: AppTest) -> str:
    """All markdown, captions, info and success text of the last run, joined."""
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption]
    parts += [i.value for i in at.info] + [s.value for s in at.success]
    return "\n".join(parts)


def png(array: np.ndarray) -> bytes:
    """PNG bytes of an (H, W) grayscale or (H, W, 3) RGB uint8 array."""
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def session_trace(at: AppTest):
    """The trace the app made for this session's image and model (kept in the shared store)."""
    from ui import state
    ss = at.session_state
    return state.trace_store().get((ss[state.K_MODEL], state.image_hash(ss[state.K_IMAGE_BYTES])))
