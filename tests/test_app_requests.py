"""Bad requests from the browser: malformed query parameters, an upload over the limit, a session
that goes away while its trace waits or runs. Each gets a clear note; the defaults take over."""
import threading
from types import SimpleNamespace

import numpy as np
import pytest
from app_helpers import app, assert_clean, png
from streamlit.runtime.scriptrunner_utils.exceptions import StopException

import detr_viz
from detr_viz.cache import DerivedCache
from detr_viz.jobs import JobQueue
from detr_viz.store import TraceStore, trace_bytes
from ui import models, session, state, traces

DEFAULT_IMAGE = "nagasaki_boats.jpg"
LONG = "x" * 10_000


@pytest.fixture(autouse=True)
def tiny_model_app(monkeypatch):
    monkeypatch.setenv(state.APP_MODEL_ENV, state.TINY_RANDOM)


def infos(at) -> str:
    return "\n".join(i.value for i in at.info)


@pytest.mark.parametrize("image", ["photo:../../etc/passwd", "../assets/samples/china.jpg", "upload:../x",
                                   "upload:" + LONG, LONG])
def test_an_image_name_that_is_not_ours_gets_a_note_and_the_default_photo(image):
    at = app(query_params={"image": image}).run()
    assert not at.exception and not at.error
    assert at.session_state[state.K_IMAGE_NAME] == DEFAULT_IMAGE
    note = infos(at)
    assert "does not know" in note and "sample photo" in note
    assert len(note) < 1000                                         # the 10,000 characters are not echoed
    assert at.query_params["image"] == f"photo:{DEFAULT_IMAGE}"     # the URL is put right


@pytest.mark.parametrize("threshold", ["nan", "inf", "-inf", "1e309", "-0.5", "1.5", LONG, "0.5; drop"])
def test_a_threshold_that_is_not_a_number_in_range_gets_a_note_and_the_default(threshold):
    at = app(query_params={"threshold": threshold}).run()
    assert not at.exception and not at.error
    assert state.K_THRESHOLD not in at.session_state
    assert "not a number between 0 and 0.99" in infos(at) and len(infos(at)) < 1000
    caption = next(c.value for c in at.caption if "segments" in c.value)
    assert "above 0.85" in caption                                  # the model's own threshold


def test_a_good_threshold_in_the_url_is_used():
    at = app(query_params={"threshold": "0.5"}).run()
    assert_clean(at)
    assert at.session_state[state.K_THRESHOLD] == 0.5


@pytest.mark.parametrize("model", ["no-such-model", LONG, "local:/etc/passwd"])
def test_an_unknown_model_gets_a_note_and_the_default_model(monkeypatch, model):
    monkeypatch.delenv(state.APP_MODEL_ENV)
    monkeypatch.setattr(models, "default_model_key", lambda: (state.TINY_RANDOM, None))
    at = app(query_params={"model": model}).run()
    assert not at.exception and not at.error
    assert at.session_state[state.K_MODEL] == state.TINY_RANDOM
    assert "not ready on this server" in infos(at) and len(infos(at)) < 1000


def test_parse_threshold_accepts_only_finite_numbers_in_range():
    assert session.parse_threshold("0.7") == 0.7 and session.parse_threshold("0") == 0.0
    for bad in ("nan", "NaN", "inf", "1e309", "-1e-9", "0.995", "", "0x1", LONG):
        assert session.parse_threshold(bad) is None, bad


def test_an_upload_over_the_limit_gets_a_note_and_keeps_the_previous_image(monkeypatch):
    at = app().run()
    monkeypatch.setattr(session, "max_upload_bytes", lambda: 2000)
    big = png((np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8))
    assert len(big) > 2000
    at.file_uploader[0].set_value(("big.png", big, "image/png")).run()
    assert not at.exception
    msg = " ".join(e.value for e in at.error)
    assert "big.png" in msg and "server.maxUploadSize" in msg and "still in use" in msg
    assert at.session_state[state.K_IMAGE_NAME] == DEFAULT_IMAGE


def test_the_upload_limit_is_the_config_files():
    import tomllib
    from conftest import REPO
    config = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())
    assert config["server"]["maxUploadSize"] == 50
    assert session.max_upload_bytes() == 50 * 2**20              # the app checks the same limit


def test_the_home_page_shows_the_server_panel():
    at = app().run()
    assert_clean(at)
    panel = next(e for e in at.expander if e.label == "Server")
    text = " ".join(m.value for m in panel.markdown)
    assert "Traces held:" in text and "MB of 2,000 MB" in text and "waiting:" in text


# ---- the trace queue seen from the app ---------------------------------------------------------------
class FakeTrace(SimpleNamespace):
    def __init__(self):
        super().__init__(total_time=0.5, device_name="cpu", nbytes=10, derived=DerivedCache(), image=None,
                         pre=None, panoptic=None)


class Status:
    """Stands in for st.status; after `stop_after` updates, or at the first label starting with
    `stop_on`, it raises StopException (the session went away)."""

    def __init__(self, stop_after=None, stop_on=None):
        self.labels, self.stop_after, self.stop_on = [], stop_after, stop_on

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, label=None, **kw):
        self.labels.append(label)
        if ((self.stop_after is not None and len(self.labels) >= self.stop_after)
                or (self.stop_on and str(label).startswith(self.stop_on))):
            raise StopException()

    def write(self, text):
        pass


@pytest.fixture
def fresh(monkeypatch):
    store, queue = TraceStore(10**6, trace_bytes, trim=False), JobQueue(workers=1)
    monkeypatch.setattr(traces, "trace_store", lambda: store)
    monkeypatch.setattr(traces, "trace_queue", lambda: queue)
    monkeypatch.setattr(traces, "POLL_S", 0.02)
    return store, queue


def block_the_queue(queue):
    gate = threading.Event()
    ticket = queue.submit("busy", lambda progress: gate.wait(10))
    while ticket.state != "running":
        gate.wait(0.01)
    return gate


def test_two_reruns_asking_at_once_trace_the_image_once(fresh, monkeypatch):
    store, queue = fresh
    calls, started = [], threading.Event()

    def slow_trace(model, data, progress=None):
        calls.append(data)
        started.set()
        threading.Event().wait(0.5)
        return FakeTrace()
    monkeypatch.setattr(detr_viz, "trace", slow_trace)
    data, out = b"not really an image, never decoded here", []

    def ask():
        out.append(traces.get_trace("fake-model", None, data, "fake.jpg", "d1", status_factory=Status))
    first = threading.Thread(target=ask)
    first.start()
    started.wait(5)
    second = threading.Thread(target=ask)
    second.start()
    first.join(10)
    second.join(10)
    assert len(calls) == 1 and len(out) == 2 and out[0] is out[1]
    assert queue.stats()["running"] == queue.stats()["waiting"] == 0 and store.get(("fake-model", "d1")) is out[0]


def test_a_waiting_session_sees_its_place_and_leaves_the_line_when_it_goes(fresh, monkeypatch):
    store, queue = fresh
    calls = []
    monkeypatch.setattr(detr_viz, "trace", lambda *a, **k: calls.append(1) or FakeTrace())
    gate = block_the_queue(queue)
    status = Status(stop_after=3)
    with pytest.raises(StopException):
        traces.get_trace("m", None, b"img", "mine.jpg", "d2", status_factory=lambda: status)
    assert status.labels[0].startswith("1 photo is ahead of yours")
    assert queue.stats()["waiting"] == 0                          # it left the line
    gate.set()
    assert not calls and ("m", "d2") not in store                 # and was never computed


def test_a_session_that_goes_while_its_trace_runs_leaves_the_trace_in_the_store_only(fresh, monkeypatch):
    import gc
    import weakref
    store, queue = fresh
    gate, made = threading.Event(), []

    def slow_trace(model, data, progress=None):
        progress(1, "CNN backbone")
        gate.wait(10)
        made.append(FakeTrace())
        return made[-1]
    monkeypatch.setattr(detr_viz, "trace", slow_trace)
    with pytest.raises(StopException):
        traces.get_trace("m", None, b"img", "mine.jpg", "d3", status_factory=lambda: Status(stop_on="Step 1"))
    assert queue.stats()["running"] == 1                          # it left while the trace ran
    gate.set()
    while queue.stats()["completed"] < 1:
        gate.wait(0.01)
    ref = weakref.ref(made.pop())
    assert store.get(("m", "d3")) is ref()                        # a later run finds it
    store.clear()
    gc.collect()
    assert ref() is None                                          # nothing else kept it


def test_a_session_whose_trace_was_set_aside_gets_it_again_with_a_note():
    at = app().run()
    assert_clean(at)
    ss = at.session_state
    key = (ss[state.K_MODEL], ss[state.K_IMAGE_HASH])
    assert key in traces.trace_store() and "trace aside" not in infos(at)
    traces.trace_store().pop(key)                                  # the store made room for other photos
    at.run()
    assert_clean(at)
    assert "trace aside" in infos(at) and key in traces.trace_store()
    at.run()
    assert "trace aside" not in infos(at)                            # once
