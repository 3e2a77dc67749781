"""Issue 14 in the app: "Your model" on Home. A small custom checkpoint (5 classes, 12 queries, saved
as the official training script does) with its categories file is uploaded, and every page works
with it and names its classes; bad files get clear messages and the previous model stays."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
from app_helpers import app, assert_clean, texts
from safetensors.torch import load_file, save_file
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
from test_formats_hf import FIXTURE, make_hf_fixture
from test_formats_training import official_args, save_like_main_py

import detr_viz
from detr_viz import samples
from detr_viz.random_models import TINY, tiny_model
from ui import models, own_model, state

CUSTOM = TINY.replace(num_classes=5, num_queries=12)
SITE = [{"id": 0, "name": "excavator", "isthing": 1, "color": [250, 200, 0]},
        {"id": 1, "name": "worker", "isthing": 1, "color": [0, 120, 250]},
        {"id": 2, "name": "crane", "isthing": 1, "color": [200, 0, 200]},
        {"id": 3, "name": "gravel", "isthing": 0, "color": [120, 110, 90]},
        {"id": 4, "name": "site-sky", "isthing": 0, "color": [140, 200, 250]}]
PAGES = ["pages/1_Backbone.py", "pages/2_Encoder.py", "pages/3_Decoder.py", "pages/4_Box_attention.py",
         "pages/5_Concat_Res5.py", "pages/6_Upsampling.py", "pages/7_Merge.py", "pages/8_All_tensors.py"]


def confident(model):
    """Random weights, but a class head that answers with confidence on the Home page's default
    photo: query q says class q % 5 (things and stuff) at probability ~1, "no object" never. The
    head is solved from the last decoder layer's output on that photo (12 queries, 128 channels)."""
    s = samples.default_sample("coco")
    hs = detr_viz.trace(model, s.read_bytes())["decoder.hs"][-1, 0].double()     # (N, d)
    mean = hs.mean(0)
    target = torch.full((CUSTOM.num_queries, CUSTOM.num_classes + 1), -30.0, dtype=torch.float64)
    target[torch.arange(CUSTOM.num_queries), torch.arange(CUSTOM.num_queries) % CUSTOM.num_classes] = 30.0
    weight = torch.linalg.pinv(hs - mean) @ target                                 # (d, C + 1)
    head = model.detr.class_embed
    with torch.no_grad():
        head.weight.copy_(weight.T)
        head.bias.copy_(-(mean @ weight))
    return model


@pytest.fixture(scope="module")
def site_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    ckpt = root / "checkpoint.pth"
    save_like_main_py(confident(tiny_model(CUSTOM, seed=1)), ckpt, official_args(CUSTOM))
    cats = root / "site_categories.json"
    cats.write_text(json.dumps({"categories": SITE}))
    return ckpt, cats


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    monkeypatch.setenv(state.APP_MODEL_ENV, state.TINY_RANDOM)
    monkeypatch.setenv(own_model.UPLOAD_DIR_ENV, str(tmp_path / "uploads"))
    for var in ("HF_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME"):         # no real cache in the picker
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))


def upload(at, ckpt_name, ckpt_bytes, cats_name=None, cats_bytes=None):
    at.radio(key=own_model.W_SOURCE).set_value(own_model.UPLOAD).run()
    at.file_uploader(key=own_model.W_CKPT).set_value((ckpt_name, ckpt_bytes, "application/octet-stream"))
    if cats_name:
        at.file_uploader(key=own_model.W_CATS).set_value((cats_name, cats_bytes, "application/json"))
    return at.button(key=own_model.W_USE).click().run()


@pytest.fixture
def media(monkeypatch):
    """The files AppTest's download buttons serve (its media storage is dropped after each run)."""
    stores = []

    class Recording(MemoryMediaFileStorage):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            stores.append(self)

    monkeypatch.setattr("streamlit.testing.v1.app_test.MemoryMediaFileStorage", Recording)

    def read(url: str) -> bytes:
        return stores[-1].get_file(url.rsplit("/", 1)[-1]).content
    return read


def frames(at) -> list:
    out = []
    for df in at.dataframe:
        value = df.value
        out.append(value.data if hasattr(value, "data") else value)     # a Styler holds its frame
    return out


def cells(at) -> set:
    return {str(v) for f in frames(at) for v in f.to_numpy().ravel()}


def test_uploaded_training_checkpoint_with_categories_walks_every_page(site_files, media):
    ckpt, cats = site_files
    at = app().run()
    upload(at, "checkpoint.pth", ckpt.read_bytes(), "site_categories.json", cats.read_bytes())
    assert_clean(at)
    key = at.session_state[state.K_MODEL]
    path, cats_path = models.split_local_key(key)
    assert path.endswith("checkpoint.pth") and cats_path.endswith("site_categories.json")
    sidebar = "\n".join([m.value for m in at.sidebar.markdown] + [c.value for c in at.sidebar.caption])
    assert "your model checkpoint.pth with the categories of site_categories.json" in sidebar
    assert "official training checkpoint (epoch 11)" in sidebar and "5 classes, 12 queries" in sidebar
    assert "categories file site_categories.json" in sidebar and "guess" not in sidebar
    names = {c["name"] for c in SITE}
    for page in PAGES:
        at.switch_page(page).run()
        assert_clean(at)
        assert at.session_state[state.K_MODEL] == key, page
        if page.endswith("3_Decoder.py"):
            table = frames(at)[0]
            assert len(table) == CUSTOM.num_queries                   # one row per query: 12, not 100
            assert set(table["class"]) == names, "page 3's table names the custom classes"
            assert dict(zip(table["class"], table["kind"]))["gravel"] == "stuff"
        if page.endswith("7_Merge.py"):
            legend = next(f for f in frames(at) if "colour" in f.columns)
            assert names <= set(map(str, legend.to_numpy().ravel())), "page 7's legend names the classes"
        if page.endswith("8_All_tensors.py"):
            button = next(b for b in at.get("download_button") if b.proto.label == "Segments (JSON)")
            segments = json.loads(media(button.proto.url))
            seg_list = segments["segments_info"] if isinstance(segments, dict) else segments
            assert seg_list and {s["name"] for s in seg_list} <= names
            assert {s["isthing"] for s in seg_list if s["name"] in ("gravel", "site-sky")} <= {False}


def test_malformed_categories_file_is_refused_and_the_model_stays(site_files):
    at = app().run()
    upload(at, "checkpoint.pth", site_files[0].read_bytes(), "cats.json", b'{"categories": [{"id": 0}]}')
    assert at.session_state[state.K_MODEL] == state.TINY_RANDOM
    message = " ".join(e.value for e in at.error)
    assert "cats.json" in message and "name" in message and "is still in use" in message
    upload(at, "checkpoint.pth", site_files[0].read_bytes(), "broken.json", b"{not json")
    assert at.session_state[state.K_MODEL] == state.TINY_RANDOM
    assert "not valid JSON" in " ".join(e.value for e in at.error)


def test_non_checkpoint_upload_is_refused_and_the_model_stays():
    at = app().run()
    upload(at, "holiday.pth", b"These are my holiday notes, not a checkpoint.\n" * 20)
    assert at.session_state[state.K_MODEL] == state.TINY_RANDOM
    message = " ".join(e.value for e in at.error)
    assert "holiday.pth" in message and "checkpoint" in message and "is still in use" in message
    assert not at.exception


def test_server_path_to_a_hugging_face_folder_loads(tmp_path):
    folder = tmp_path / "detr-tiny-hf"
    folder.mkdir()
    sd = load_file(FIXTURE / "model.nobackbone.safetensors")
    for key, shape in json.loads((FIXTURE / "backbone.json").read_text()).items():
        sd[key] = make_hf_fixture.seeded_tensor(key, shape)
    save_file(sd, folder / "model.safetensors", metadata={"format": "pt"})
    shutil.copy(FIXTURE / "config.json", folder / "config.json")
    at = app().run()
    # an uploaded model.safetensors with its config.json as the categories file: a Hugging Face folder
    upload(at, "model.safetensors", (folder / "model.safetensors").read_bytes(), "config.json",
           (folder / "config.json").read_bytes())
    assert_clean(at)
    uploaded, cats = models.split_local_key(at.session_state[state.K_MODEL])
    assert cats is None                                   # config.json went into the folder
    assert sorted(p.name for p in own_model.upload_dir().joinpath(uploaded.rsplit("/", 1)[-1]).iterdir()) == \
        ["config.json", "model.safetensors"]
    at.radio(key=own_model.W_SOURCE).set_value(own_model.PATH).run()
    at.text_input(key=own_model.W_PATH).input(str(tmp_path / "nothing-here")).run()
    at.button(key=own_model.W_USE).click().run()
    assert "There is nothing at" in " ".join(e.value for e in at.error)
    at.file_uploader(key=own_model.W_CATS).set_value([])
    at.text_input(key=own_model.W_PATH).input(str(folder)).run()
    at.button(key=own_model.W_USE).click().run()
    assert_clean(at)
    assert at.session_state[state.K_MODEL] == f"local:{folder}"
    sidebar = "\n".join(c.value for c in at.sidebar.caption)
    assert "Hugging Face" in sidebar and "guess" in sidebar          # id2label names, thing/stuff guessed
    assert "your model" in texts(at)


def test_models_in_the_local_hugging_face_and_torch_hub_caches_are_offered(tmp_path, monkeypatch):
    hub_ckpts = tmp_path / "torch" / "hub" / "checkpoints"
    hub_ckpts.mkdir(parents=True)
    (hub_ckpts / "site-run-3.pth").write_bytes(b"x")
    (hub_ckpts / "detr-r50-panoptic-00ce5173.pth").write_bytes(b"x")      # an official model: listed above
    monkeypatch.setattr(models, "torch_hub_dir", lambda: str(tmp_path / "torch" / "hub"))
    repo = tmp_path / "hub" / "models--someone--detr-tiny-panoptic"
    snap = repo / "snapshots" / ("0123abcd" * 5)
    snap.mkdir(parents=True)
    shutil.copy(FIXTURE / "config.json", snap / "config.json")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd" * 5)
    other = tmp_path / "hub" / "models--someone--bert"
    (other / "snapshots" / "1").mkdir(parents=True)
    (other / "snapshots" / "1" / "config.json").write_text('{"architectures": ["BertModel"]}')
    at = app().run()
    at.radio(key=own_model.W_SOURCE).set_value(own_model.FOUND).run()
    options = at.selectbox(key=own_model.W_FOUND).options
    labels = list(options)                                                # as shown (format_func applied)
    assert any("someone/detr-tiny-panoptic" in o for o in labels), labels
    assert any("site-run-3.pth" in o for o in labels), labels
    assert not any("bert" in o or "00ce5173" in o for o in labels)


def test_local_keys_carry_the_categories_and_only_known_ones_come_back_by_url(tmp_path):
    key = models.local_key(tmp_path / "run" / "checkpoint.pth", tmp_path / "cats.json")
    assert models.split_local_key(key) == (str(tmp_path / "run" / "checkpoint.pth"), str(tmp_path / "cats.json"))
    assert models.split_local_key(models.local_key(tmp_path / "x.pth")) == (str(tmp_path / "x.pth"), None)
    assert not models.model_allowed(key)
    models.local_checkpoints().add(key[len(models.LOCAL_PREFIX):])
    assert models.model_allowed(key)
    assert not models.model_allowed(models.local_key(tmp_path / "run" / "checkpoint.pth", "/etc/passwd"))


def test_app_started_on_a_training_run_with_its_categories(monkeypatch, site_files):
    """`streamlit run app.py -- --checkpoint runs/x/checkpoint.pth --categories FILE`."""
    ckpt, cats = site_files
    monkeypatch.delenv(state.APP_MODEL_ENV)
    monkeypatch.setattr("sys.argv", ["app.py", "--checkpoint", str(ckpt), "--categories", str(cats)])
    at = app().run()
    assert_clean(at)
    assert at.session_state[state.K_MODEL] == models.local_key(ckpt, cats)
    assert "categories file site_categories.json" in "\n".join(c.value for c in at.sidebar.caption)


def test_without_categories_the_classes_are_generic_and_thing_stuff_a_guess(site_files):
    at = app().run()
    at.radio(key=own_model.W_SOURCE).set_value(own_model.PATH).run()
    at.text_input(key=own_model.W_PATH).input(str(site_files[0])).run()
    at.button(key=own_model.W_USE).click().run()
    assert_clean(at)
    assert "Thing/stuff is a guess" in "\n".join(c.value for c in at.sidebar.caption)
    at.switch_page("pages/7_Merge.py").run()
    assert_clean(at)
    legend = next(f for f in frames(at) if "colour" in f.columns)
    assert {"class 0", "class 3"} <= set(map(str, legend.to_numpy().ravel()))
    assert "thing/stuff is a guess" in texts(at)                      # page 7's legend caption says so
