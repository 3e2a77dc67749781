"""The Home page (app.py) in AppTest with the tiny random model: diagram with live shapes, image
upload (good, grayscale, broken), samples with credits, the model picker's fallback, the URL."""
import numpy as np
import pytest
from app_helpers import app, assert_clean, png, texts

from detr_viz import WeightsUnavailable
from detr_viz import registry as weights
from ui import state


@pytest.fixture(autouse=True)
def tiny_model_app(monkeypatch):
    monkeypatch.setenv(state.APP_MODEL_ENV, state.TINY_RANDOM)


def diagram(at) -> str:
    return next(m.value for m in at.markdown if m.value.startswith("<svg"))


def test_home_runs_and_shows_the_pipeline_with_live_shapes():
    at = app().run()
    assert_clean(at)
    assert at.session_state[state.K_MODEL] == state.TINY_RANDOM
    assert at.session_state[state.K_IMAGE_NAME] == "nagasaki_boats.jpg"
    svg = diagram(at)
    # nagasaki_boats.jpg is 1024 x 819 -> network input 1000 x 800 -> grid 25 x 32; the tiny model has d = 128
    for shape in ("3 x 819 x 1024", "3 x 800 x 1000", "512 x 25 x 32", "128 x 25 x 32", "10 x 8 x 25 x 32"):
        assert shape in svg
    for path in ("/Backbone?", "/Encoder?", "/Decoder?", "/Box_attention?", "/Concat_Res5?", "/Upsampling?",
                 "/Merge?", "/All_tensors?"):
        assert path in svg
    assert 'target="_self"' in svg and "image=photo%3Anagasaki_boats.jpg" in svg
    assert at.get("plotly_chart"), "the timings chart"
    assert "CPU" in texts(at) or "GPU" in texts(at)
    assert at.query_params["image"] == "photo:nagasaki_boats.jpg"


def test_upload_png_then_grayscale_changes_the_image():
    at = app().run()
    rng = np.random.default_rng(0)
    at.file_uploader[0].set_value(("colour.png", png((rng.random((90, 120, 3)) * 255).astype(np.uint8)),
                                   "image/png")).run()
    assert_clean(at)
    assert at.session_state[state.K_IMAGE_NAME] == "colour.png"
    assert "3 x 90 x 120" in diagram(at)
    at.file_uploader[0].set_value(("gray.png", png((rng.random((60, 150)) * 255).astype(np.uint8)),
                                   "image/png")).run()
    assert_clean(at)
    assert at.session_state[state.K_IMAGE_NAME] == "gray.png"
    assert "3 x 60 x 150" in diagram(at)                      # grayscale becomes 3 channels
    assert at.query_params["image"].startswith("upload:")


@pytest.mark.parametrize("name,data", [
    ("notes.jpg", b"This is a text file, not a photo.\n"),
    ("cut.png", png(np.zeros((40, 40, 3), np.uint8))[:60]),   # truncated PNG
])
def test_broken_upload_gives_a_clear_message_and_keeps_the_previous_image(name, data):
    at = app().run()
    before = diagram(at)
    at.file_uploader[0].set_value((name, data, "image/jpeg")).run()
    assert not at.exception
    assert len(at.error) == 1
    msg = at.error[0].value
    assert name in msg and "nagasaki_boats.jpg" in msg and "still in use" in msg
    assert "Traceback" not in msg
    assert at.session_state[state.K_IMAGE_NAME] == "nagasaki_boats.jpg"
    assert diagram(at) == before
    at.run()                                                  # the same upload is not processed again
    assert at.session_state[state.K_IMAGE_NAME] == "nagasaki_boats.jpg" and len(at.error) == 1


def test_selecting_a_sample_changes_the_trace_and_shows_its_credit():
    at = app().run()
    at.selectbox(key="sample_widget").set_value("photo:china.jpg").run()
    assert_clean(at)
    assert at.session_state[state.K_IMAGE_NAME] == "china.jpg"
    assert "3 x 427 x 640" in diagram(at)                     # china.jpg is 640 x 427
    assert "3 x 819 x 1024" not in diagram(at)
    credits = [c.value for c in at.caption] + [c.value for c in at.sidebar.caption]
    assert any("danielbuechele" in c and "CC BY 2.0" in c for c in credits)


def test_threshold_slider_on_home_changes_the_kept_set():
    at = app().run()
    caption = next(c.value for c in at.caption if "segments" in c.value)
    assert "from 5 of the 10 queries" in caption
    at.slider(key="threshold_widget").set_value(0.5).run()
    assert_clean(at)
    assert at.session_state[state.K_THRESHOLD] == 0.5
    assert "from 6 of the 10 queries" in next(c.value for c in at.caption if "segments" in c.value)


def test_unavailable_official_weights_fall_back_to_the_offline_model(monkeypatch):
    def no_network(name, progress=None, checkpoint=None):
        raise WeightsUnavailable("Could not download the model weights: no network connection.",
                                 reason="no network connection")
    monkeypatch.setattr(weights, "fetch", no_network)
    monkeypatch.setattr(state, "weights_on_disk", lambda key: key in (state.TINY_RANDOM,))
    at = app().run()
    at.selectbox(key="model_widget").set_value("detr-r50-panoptic").run()
    assert at.session_state[state.K_MODEL] == state.TINY_RANDOM   # not switched before the download
    button = next(b for b in at.button if b.label.startswith("Download and use"))
    button.click().run()
    assert not at.exception
    warning = " ".join(w.value for w in at.warning)
    assert "cannot be had" in warning and state.offline_model_key() in warning
    assert any("no network connection" in c.value for c in at.code)
    assert at.session_state[state.K_MODEL] == state.offline_model_key()
    assert any("could not be had" in n for n in at.session_state[state.K_NOTES])


def test_a_url_names_the_image_in_a_fresh_session():
    at = app(query_params={"image": "photo:china.jpg"}).run()
    assert_clean(at)
    assert at.session_state[state.K_IMAGE_NAME] == "china.jpg"
    gone = app(query_params={"image": "upload:0123456789abcdef"}).run()
    assert not gone.exception
    assert gone.session_state[state.K_IMAGE_NAME] == "nagasaki_boats.jpg"
    assert any("no longer on the server" in i.value for i in gone.info)


def test_a_failing_sample_or_choice_gives_a_message_and_keeps_the_image(monkeypatch):
    at = app().run()
    assert_clean(at)

    def unreadable(key):
        raise OSError(f"cannot read {key}")
    monkeypatch.setattr(state, "set_sample", unreadable)
    at.selectbox(key="sample_widget").set_value("photo:china.jpg").run()
    assert not at.exception
    assert at.session_state[state.K_IMAGE_NAME] == "nagasaki_boats.jpg"          # the previous image stays
    assert at.session_state["sample_widget"] == "photo:nagasaki_boats.jpg"       # and the picker shows it
    errors = " ".join(e.value for e in at.error)
    assert "cannot be used (OSError: cannot read photo:china.jpg)" in errors and "still in use" in errors

    def broken():
        raise RuntimeError("broken choice")
    monkeypatch.setattr(state, "ensure_choice", broken)
    at.run()
    assert not at.exception
    assert any("could not be set up (RuntimeError: broken choice)" in e.value for e in at.error)
    assert at.session_state[state.K_IMAGE_NAME] == "nagasaki_boats.jpg"


def test_app_started_with_a_checkpoint_uses_it(monkeypatch, tmp_path):
    """`streamlit run app.py -- --checkpoint PATH`: the file is the default model."""
    import torch

    from detr_viz.testing import TINY, tiny_model
    ckpt = tmp_path / "my-model.pth"
    torch.save({"model": tiny_model().state_dict(), "config": TINY.to_dict()}, ckpt)
    assert state.cli_checkpoint(["--checkpoint", str(ckpt)]) == str(ckpt)
    assert state.cli_checkpoint([f"--checkpoint={ckpt}"]) == str(ckpt)
    assert state.cli_checkpoint(["--other"]) is None
    monkeypatch.delenv(state.APP_MODEL_ENV)
    monkeypatch.setattr("sys.argv", ["app.py", "--checkpoint", str(ckpt)])
    at = app().run()
    assert_clean(at)
    assert at.session_state[state.K_MODEL] == f"local:{ckpt}"
    monkeypatch.setattr("sys.argv", ["app.py", "--checkpoint", str(tmp_path / "missing.pth")])
    at = app().run()
    assert not at.exception
    assert not at.session_state[state.K_MODEL].startswith("local:")
    assert any("no such file" in n for n in at.session_state[state.K_NOTES])


def test_download_button_fetches_from_a_server_with_a_progress_bar_and_uses_the_model(monkeypatch, tmp_path):
    """The real download path of the app, against a local HTTP server: the official R50 entry
    points at a small checkpoint (tiny config inside) with its true hash."""
    import dataclasses
    import hashlib
    import http.server
    import io
    import threading

    import torch

    from detr_viz.testing import TINY, tiny_model
    buf = io.BytesIO()
    torch.save({"model": tiny_model().state_dict(), "config": TINY.to_dict()}, buf)
    data = buf.getvalue()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            for i in range(0, len(data), 64_000):
                self.wfile.write(data[i:i + 64_000])

        def log_message(self, *args):
            pass
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        name = "detr-r50-panoptic"
        entry = dataclasses.replace(weights.MODELS[name], url=f"http://127.0.0.1:{srv.server_address[1]}/r50.pth",
                                    file_name="detr-r50-panoptic-test.pth",
                                    sha256_prefix=hashlib.sha256(data).hexdigest()[:16])
        monkeypatch.setitem(weights.MODELS, name, entry)
        monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
        monkeypatch.delenv(weights.ENV_VAR, raising=False)
        at = app().run()
        at.selectbox(key="model_widget").set_value(name).run()
        assert not entry.cache_path.exists()
        next(b for b in at.button if b.label == f"Download and use {name}").click().run()
        assert_clean(at)
        assert entry.cache_path.read_bytes() == data                    # downloaded into the hub cache
        assert at.session_state[state.K_MODEL] == name                   # and in use
        assert "from 5 of the 10 queries" not in " ".join(c.value for c in at.caption)   # not the biased test model
    finally:
        srv.shutdown()
        srv.server_close()
        state.load_model.clear()                 # the tiny stand-in must not stay cached as the R50
