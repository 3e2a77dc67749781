"""Issue 14.2: Hugging Face DetrForSegmentation files, as a folder and in a fake local HF cache.

The fixture (tests/data/hf_detr_tiny, written by scripts/make_hf_fixture.py with transformers'
own save_pretrained) holds transformers' outputs on a fixed input; this test does not import
transformers. The 45 MB resnet18 backbone is rebuilt from the seed the script used.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil

import pytest
import torch
from conftest import REPO
from safetensors.torch import load_file, save_file

import detr_viz
from detr_viz.errors import WeightsUnavailable
from detr_viz.formats import huggingface

FIXTURE = REPO / "tests" / "data" / "hf_detr_tiny"
_spec = importlib.util.spec_from_file_location("make_hf_fixture", REPO / "scripts" / "make_hf_fixture.py")
make_hf_fixture = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_hf_fixture)             # its transformers import is inside main()


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    """model.safetensors exactly as transformers saved it: kept tensors + the seeded backbone."""
    sd = load_file(FIXTURE / "model.nobackbone.safetensors")
    for key, shape in json.loads((FIXTURE / "backbone.json").read_text()).items():
        sd[key] = make_hf_fixture.seeded_tensor(key, shape)
    path = tmp_path_factory.mktemp("hf") / "model.safetensors"
    save_file(sd, path, metadata={"format": "pt"})
    return path


@pytest.fixture(scope="module")
def expected():
    return load_file(FIXTURE / "outputs.safetensors")


def hf_folder(root, weights_file, config: dict | None = None):
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(weights_file, root / "model.safetensors")
    text = json.dumps(config) if config is not None else (FIXTURE / "config.json").read_text()
    (root / "config.json").write_text(text)
    return root


def fake_cache(hub, weights_file, repo="someone/detr-tiny-panoptic", commit="0123abcd" * 5):
    """models--org--name/{blobs, refs/main, snapshots/<commit>/ -> ../../blobs/<sha256>} as huggingface_hub lays it out."""
    repo_dir = hub / ("models--" + repo.replace("/", "--"))
    snap, blobs = repo_dir / "snapshots" / commit, repo_dir / "blobs"
    snap.mkdir(parents=True)
    blobs.mkdir()
    for src, name in ((weights_file, "model.safetensors"), (FIXTURE / "config.json", "config.json")):
        blob = blobs / hashlib.sha256(src.read_bytes()).hexdigest()
        shutil.copy(src, blob)
        os.symlink(os.path.relpath(blob, snap), snap / name)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(commit)
    return repo_dir


def assert_matches_transformers(model, expected) -> None:
    with torch.no_grad():
        out = model(expected["pixel_values"])
    for key in ("pred_logits", "pred_boxes", "pred_masks"):
        want, got = expected[key], out[key]
        assert got.shape == want.shape, key
        rel = ((got - want).abs().max() / want.abs().max()).item()
        assert rel <= 1e-4, f"{key}: max relative difference {rel:.2e}"


def test_folder_matches_transformers_forward(tmp_path, weights_file, expected):
    model = detr_viz.create_model(hf_folder(tmp_path / "my-detr", weights_file), device="cpu")
    cfg = model.config
    assert (cfg.backbone, cfg.dilation, cfg.hidden_dim, cfg.nheads) == ("resnet18", False, 128, 8)
    assert (cfg.enc_layers, cfg.dec_layers, cfg.dim_feedforward, cfg.num_queries, cfg.num_classes) == (1, 2, 64, 6, 5)
    assert model.source["format"] == "Hugging Face DetrForSegmentation" and model.model_name == "my-detr"
    assert [model.categories[i].name for i in range(5)] == ["crane", "worker", "helmet", "gravel", "sky"]
    assert model.categories.isthing_guessed                   # id2label says nothing about thing/stuff
    assert_matches_transformers(model, expected)


def test_the_hub_config_form_reads_the_same(tmp_path, weights_file, expected):
    """Hub files say "backbone": "resnet50", "use_timm_backbone": true (no backbone_config)."""
    cfg = json.loads((FIXTURE / "config.json").read_text())
    nested = cfg.pop("backbone_config")
    cfg.update(backbone=nested["backbone"], use_timm_backbone=True)
    assert "backbone_config" not in cfg and json.loads((FIXTURE / "config.json").read_text()).get("backbone") is None
    model = detr_viz.create_model(hf_folder(tmp_path / "hub-form", weights_file, cfg), device="cpu")
    assert model.config.backbone == "resnet18"
    assert_matches_transformers(model, expected)


@pytest.mark.parametrize("variable", ["HF_HUB_CACHE", "HF_HOME"])
def test_model_in_the_local_hf_cache(tmp_path, weights_file, expected, monkeypatch, variable):
    for v in ("HF_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(v, raising=False)
    hub = tmp_path / "cache" / "hub"
    repo_dir = fake_cache(hub, weights_file)
    monkeypatch.setenv(variable, str(hub if variable == "HF_HUB_CACHE" else hub.parent))
    model = detr_viz.create_model("someone/detr-tiny-panoptic", device="cpu")
    assert model.model_name == "detr-tiny-panoptic" and "local cache" in model.source["format"]
    assert_matches_transformers(model, expected)
    assert huggingface.find(repo_dir) == huggingface.find("someone/detr-tiny-panoptic")
    assert huggingface.find("someone/not-there") is None


def test_categories_file_overrides_id2label(tmp_path, weights_file):
    cats = tmp_path / "cats.json"
    cats.write_text(json.dumps([{"id": 0, "name": "crane", "isthing": 1}, {"id": 4, "name": "sky", "isthing": 0}]))
    model = detr_viz.create_model(hf_folder(tmp_path / "m", weights_file), categories=cats, device="cpu")
    assert not model.categories.isthing_guessed and not model.categories.is_thing(4)


def test_missing_weights_and_detection_only(tmp_path, weights_file):
    folder = tmp_path / "empty"
    folder.mkdir()
    shutil.copy(FIXTURE / "config.json", folder / "config.json")
    with pytest.raises(WeightsUnavailable, match="no model.safetensors or pytorch_model.bin"):
        detr_viz.create_model(folder, device="cpu")
    sd = {k: v for k, v in load_file(weights_file).items() if not k.startswith(("bbox_attention", "mask_head"))}
    save_file(sd, folder / "model.safetensors")
    with pytest.raises(WeightsUnavailable, match="detection-only"):
        detr_viz.create_model(folder, device="cpu")
