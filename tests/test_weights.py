"""Weights registry, download and checkpoint loading, with a local HTTP server and tiny files."""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import http.server
import re
import socket
import threading
from pathlib import Path

import pytest
import torch

from detr_viz import checkpoint, download, errors, hashing, registry
from detr_viz.config import DETRConfig

DATA = Path(__file__).parent / "data"


# ---- fixtures ----------------------------------------------------------------------------------
def tiny_checkpoint(path: Path, **extra) -> bytes:
    """A few-KB checkpoint in the official layout; returns the file's bytes."""
    sd = {"detr.class_embed.weight": torch.randn(5, 8), "detr.query_embed.weight": torch.randn(4, 8)}
    torch.save({"model": sd, **extra}, path)
    return path.read_bytes()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A fresh torch hub dir; the real cache is never touched."""
    hub = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "_hub_dir", str(hub))
    monkeypatch.delenv(errors.ENV_VAR, raising=False)
    return hub / "checkpoints"


@pytest.fixture(scope="module")
def payload(tmp_path_factory):
    path = tmp_path_factory.mktemp("srv") / "tiny.pth"
    data = tiny_checkpoint(path)
    return data, hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def server(payload):
    """http://127.0.0.1:<port>/ok.pth (the payload), /short.pth (truncated), /missing (404)."""
    data, _ = payload

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/ok.pth":
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                for i in range(0, len(data), 1000):      # several chunks on the wire
                    self.wfile.write(data[i:i + 1000])
            elif self.path == "/short.pth":
                self.send_response(200)
                self.send_header("Content-Length", str(len(data) + 5000))
                self.end_headers()
                self.wfile.write(data)
                self.close_connection = True
            else:
                self.send_error(404)

        def log_message(self, *args):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def closed_port_url() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}/x.pth"


def entry_for(url: str, prefix: str, file_name="detr-test-panoptic.pth", name="test") -> registry.WeightsEntry:
    return dataclasses.replace(registry.MODELS["detr-r50-panoptic"], name=name, url=url,
                               file_name=file_name, sha256_prefix=prefix)


# ---- registry ----------------------------------------------------------------------------------
def test_registry_matches_checkpoints_md():
    expected = {
        "detr-r50-panoptic": ("detr-r50-panoptic-00ce5173.pth", "00ce5173", 43.4, "resnet50", False),
        "detr-r50-dc5-panoptic": ("detr-r50-dc5-panoptic-da08f1b1.pth", "da08f1b1", 44.6, "resnet50", True),
        "detr-r101-panoptic": ("detr-r101-panoptic-40021d53.pth", "40021d53", 45.1, "resnet101", False),
    }
    assert set(registry.MODELS) >= set(expected) | {"toyworld"}
    for name, (fname, prefix, pq, backbone, dilation) in expected.items():
        e = registry.MODELS[name]
        assert e.url == "https://dl.fbaipublicfiles.com/detr/" + fname
        assert e.file_name == fname and e.sha256_prefix == prefix
        assert re.search(r"-([a-f0-9]*)\.", fname).group(1) == prefix   # torch hub's own rule
        assert e.metrics["PQ"] == pq
        assert (e.config.backbone, e.config.dilation) == (backbone, dilation)
        assert e.config.num_classes == 250 and e.config.num_queries == 100
        assert 150e6 < e.size_bytes < 260e6 and e.local_path is None
    toy = registry.MODELS["toyworld"]
    assert toy.url is None and toy.local_path == registry.REPO_ROOT / "assets" / "models" / "toyworld.pt"
    assert hash(toy) == hash(dataclasses.replace(toy))


def test_cache_dir_follows_torch_hub(cache):
    assert download.cache_dir() == cache
    assert registry.MODELS["detr-r50-panoptic"].cache_path == cache / "detr-r50-panoptic-00ce5173.pth"


def test_toyworld_hash_from_sidecar(tmp_path):
    model = tmp_path / "toyworld.pt"
    model.write_bytes(b"x")
    toy = dataclasses.replace(registry.MODELS["toyworld"], local_path=model, sha256_prefix="")
    assert toy.expected_sha256 == ""
    (tmp_path / "toyworld.pt.sha256").write_text("ABCDEF12  toyworld.pt\n")
    assert toy.expected_sha256 == "abcdef12"


def test_shipped_toyworld_file_matches_its_registry_hash():
    entry = registry.MODELS["toyworld"]
    assert entry.local_path.is_file(), "assets/models/toyworld.pt ships with the repository"
    assert len(entry.sha256_prefix) >= 8 and hashing.verify_file(entry.local_path, entry.sha256_prefix)
    sidecar = entry.local_path.with_name(entry.local_path.name + ".sha256").read_text().split()[0]
    assert sidecar.startswith(entry.sha256_prefix)
    assert entry.local_path.stat().st_size <= 25 * 1024 * 1024


# ---- download -----------------------------------------------------------------------------------
def test_download_right_hash_with_progress(cache, server, payload, monkeypatch):
    data, digest = payload
    monkeypatch.setattr(download, "CHUNK", 1024)                         # several progress steps
    calls = []
    entry = entry_for(server + "/ok.pth", digest[:8])
    path = registry.fetch_entry(entry, progress=lambda done, total: calls.append((done, total)))
    assert path == cache / entry.file_name and path.read_bytes() == data
    assert list(cache.iterdir()) == [path]                       # no temp file left
    done = [d for d, _ in calls]
    assert len(done) > 3 and done == sorted(done) and done[0] == 0 and done[-1] == len(data)
    assert all(t == len(data) for _, t in calls)
    assert registry.MODELS["detr-r50-panoptic"].cache_path != path     # registry untouched


def test_download_wrong_hash(cache, server):
    with pytest.raises(errors.ChecksumMismatch) as ei:
        registry.fetch_entry(entry_for(server + "/ok.pth", "00000000"))
    assert isinstance(ei.value, errors.WeightsUnavailable)
    assert "00000000" in str(ei.value) and ei.value.expected == "00000000" and len(ei.value.got) == 64
    assert not cache.exists() or list(cache.iterdir()) == []


def test_server_down(cache):
    url = closed_port_url()
    with pytest.raises(errors.WeightsUnavailable) as ei:
        download.download(url, cache / "x.pth", "", timeout=5)
    msg = str(ei.value)
    assert url in msg and str(cache / "x.pth") in msg
    assert errors.ENV_VAR in msg and "--checkpoint" in msg and "toyworld" in msg
    assert "no network" in msg


def test_http_error(cache, server):
    with pytest.raises(errors.WeightsUnavailable, match="HTTP 404"):
        download.download(server + "/missing", cache / "x.pth", "")


def test_truncated_download(cache, server, payload):
    with pytest.raises(errors.WeightsUnavailable, match="truncated"):
        registry.fetch_entry(entry_for(server + "/short.pth", payload[1][:8]))
    assert list(cache.iterdir()) == []


def test_terminal_progress_callback(capsys):
    cb = download.terminal_progress("test")
    cb(0, 100)
    cb(60, 100)
    cb(100, 100)
    cb.close()
    cb.close()                                                    # idempotent
    assert "test" in capsys.readouterr().err


# ---- resolution order ------------------------------------------------------------------------------
def test_cached_file_with_bad_hash_is_not_trusted(cache, server, payload):
    data, digest = payload
    entry = entry_for(server + "/ok.pth", digest[:8])
    cache.mkdir(parents=True)
    entry.cache_path.write_bytes(b"corrupt")
    assert registry.fetch_entry(entry).read_bytes() == data              # re-downloaded
    # and when the re-download fails, the error names the corrupt cached file
    entry.cache_path.write_bytes(b"corrupt")
    down = dataclasses.replace(entry, url=closed_port_url())
    with pytest.raises(errors.WeightsUnavailable, match="corrupt") as ei:
        registry.fetch_entry(down, timeout=5)
    assert str(entry.cache_path) in str(ei.value)


def test_good_cached_file_used_without_network(cache, payload, tmp_path):
    data, digest = payload
    entry = entry_for(closed_port_url(), digest[:8])
    cache.mkdir(parents=True)
    entry.cache_path.write_bytes(data)
    assert entry.available_offline()
    assert registry.fetch_entry(entry) == entry.cache_path


def test_env_var_file(cache, payload, tmp_path, monkeypatch):
    data, digest = payload
    # a file with another name stands for the model its name hints at (here: R50)
    entry = entry_for(closed_port_url(), digest[:8], name="detr-r50-panoptic")
    own = tmp_path / "mine.pth"                                   # no hash in the name: not checked
    own.write_bytes(b"anything")
    monkeypatch.setenv(errors.ENV_VAR, str(own))
    assert registry.fetch_entry(entry) == own and entry.available_offline()
    named = tmp_path / entry.file_name                            # registry name: checked
    named.write_bytes(b"wrong")
    monkeypatch.setenv(errors.ENV_VAR, str(named))
    with pytest.raises(errors.ChecksumMismatch):
        registry.fetch_entry(entry)
    hashed = tmp_path / f"other-{digest[:8]}.pth"                 # torch-hub-style name: checked
    hashed.write_bytes(data)
    monkeypatch.setenv(errors.ENV_VAR, str(hashed))
    assert registry.fetch_entry(entry) == hashed
    hashed.write_bytes(b"tampered")
    with pytest.raises(errors.ChecksumMismatch):
        registry.fetch_entry(entry)
    # the explicit --checkpoint path wins over the environment variable
    assert registry.fetch_entry(entry, checkpoint=own) == own


def test_env_var_directory_and_missing(cache, payload, tmp_path, monkeypatch):
    data, digest = payload
    entry = entry_for(closed_port_url(), digest[:8])
    folder = tmp_path / "weights"
    folder.mkdir()
    monkeypatch.setenv(errors.ENV_VAR, str(folder))
    assert not entry.available_offline()
    with pytest.raises(errors.WeightsUnavailable):                    # not in the folder: download fails
        registry.fetch_entry(entry, timeout=5)
    (folder / entry.file_name).write_bytes(data)
    assert registry.fetch_entry(entry) == folder / entry.file_name
    monkeypatch.setenv(errors.ENV_VAR, str(tmp_path / "nope.pth"))
    with pytest.raises(errors.WeightsUnavailable, match="does not exist"):
        registry.fetch_entry(entry)


def test_env_var_file_of_another_model_is_skipped(cache, tmp_path, monkeypatch):
    r101 = tmp_path / registry.MODELS["detr-r101-panoptic"].file_name
    r101.write_bytes(b"x")
    monkeypatch.setenv(errors.ENV_VAR, str(r101))
    assert registry.MODELS["detr-r50-panoptic"].offline_path() is None
    assert registry.MODELS["toyworld"].offline_path() != r101
    assert registry.MODELS["detr-r101-panoptic"].offline_path() == r101
    with pytest.raises(errors.ChecksumMismatch):                      # registry name: hash checked
        registry.fetch("detr-r101-panoptic")
    # an explicit --checkpoint path is always used (and its name's hash is checked)
    with pytest.raises(errors.ChecksumMismatch):
        registry.fetch("detr-r50-panoptic", checkpoint=r101)


def test_env_var_file_does_not_replace_shipped_model(cache, tmp_path, monkeypatch):
    own = tmp_path / "my-r50.pth"
    own.write_bytes(b"x")
    monkeypatch.setenv(errors.ENV_VAR, str(own))
    assert registry.MODELS["detr-r50-panoptic"].offline_path() == own
    toy = dataclasses.replace(registry.MODELS["toyworld"], local_path=tmp_path / "toyworld.pt", sha256_prefix="")
    assert toy.offline_path() is None
    tiny_checkpoint(toy.local_path)
    assert registry.fetch_entry(toy) == toy.local_path


def test_local_path_and_missing_toyworld(cache, tmp_path):
    model = tmp_path / "toyworld.pt"
    toy = dataclasses.replace(registry.MODELS["toyworld"], local_path=model, sha256_prefix="")
    with pytest.raises(errors.WeightsUnavailable, match="missing"):
        registry.fetch_entry(toy)
    data = tiny_checkpoint(model)
    assert registry.fetch_entry(toy) == model
    (tmp_path / "toyworld.pt.sha256").write_text(hashlib.sha256(data).hexdigest())
    assert registry.fetch_entry(toy) == model
    (tmp_path / "toyworld.pt.sha256").write_text("deadbeef")
    with pytest.raises(errors.ChecksumMismatch):
        registry.fetch_entry(toy)


# ---- loading ------------------------------------------------------------------------------------
def test_load_checkpoint_with_namespace_and_config(tmp_path):
    path = tmp_path / "c.pth"
    args = argparse.Namespace(lr=1e-4, backbone="resnet50", masks=True, lr_drop=None)
    tiny_checkpoint(path, args=args, epoch=3, config={"num_queries": 4})
    sd, cfg = checkpoint.load_checkpoint(path)
    assert set(sd) == {"detr.class_embed.weight", "detr.query_embed.weight"}
    assert cfg == {"num_queries": 4}


def test_load_checkpoint_bare_state_dict_float16(tmp_path):
    path = tmp_path / "half.pth"
    torch.save({"w": torch.ones(3, dtype=torch.float16), "n": torch.tensor([1, 2])}, path)
    sd, cfg = checkpoint.load_checkpoint(path)
    assert sd["w"].dtype == torch.float32 and sd["n"].dtype == torch.int64 and cfg is None


def test_load_checkpoint_checks_hash(tmp_path):
    path = tmp_path / "c.pth"
    data = tiny_checkpoint(path)
    checkpoint.load_checkpoint(path, hashlib.sha256(data).hexdigest()[:8])
    with pytest.raises(errors.ChecksumMismatch):
        checkpoint.load_checkpoint(path, "ffffffff")


@pytest.mark.parametrize("content", [b"hello, this is not a checkpoint\n", b"", b"PK\x03\x04junk"])
def test_load_checkpoint_rejects_non_checkpoints(tmp_path, content):
    path = tmp_path / "fake.pth"
    path.write_bytes(content)
    with pytest.raises(errors.WeightsUnavailable, match="not a PyTorch checkpoint"):
        checkpoint.load_checkpoint(path)


def test_load_checkpoint_refuses_code(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"model": {"w": torch.ones(1)}, "x": argparse.ArgumentParser}, path)
    with pytest.raises(errors.WeightsUnavailable, match="other than tensors"):
        checkpoint.load_checkpoint(path)


def test_load_checkpoint_without_weights(tmp_path):
    path = tmp_path / "x.pth"
    torch.save({"epoch": 3}, path)
    with pytest.raises(errors.WeightsUnavailable, match="no model weights"):
        checkpoint.load_checkpoint(path)


# ---- infer_config ---------------------------------------------------------------------------------
def tsv_shapes(name: str) -> dict:
    """An official state dict as shape-only tensors (meta device: no memory)."""
    rows = (DATA / f"{name}.state_dict.tsv").read_text().splitlines()[1:]
    out = {}
    for row in rows:
        key, shape, _ = row.split("\t")
        dims = [int(x) for x in shape.split("x")] if shape else []
        out[key] = torch.empty(dims, device="meta")
    return out


@pytest.mark.parametrize("name", ["detr-r50-panoptic", "detr-r50-dc5-panoptic", "detr-r101-panoptic"])
def test_infer_config_official(name):
    entry = registry.MODELS[name]
    assert checkpoint.infer_config(tsv_shapes(name), entry.file_name) == entry.config


@pytest.mark.parametrize("backbone", ["resnet18", "resnet34"])
def test_infer_config_small_models(backbone):
    from detr_viz.segmentation import DETRPanoptic
    cfg = DETRConfig(backbone=backbone, hidden_dim=128, nheads=16, enc_layers=2, dec_layers=1,
                     dim_feedforward=96, num_queries=7, num_classes=5)
    with torch.device("meta"):
        sd = DETRPanoptic(cfg).state_dict()
    assert checkpoint.infer_config(sd) == cfg
    assert checkpoint.infer_config(sd, "toy-dc5.pth").dilation


def test_infer_config_rejects_other_files():
    with pytest.raises(errors.WeightsUnavailable):
        checkpoint.infer_config({"w": torch.ones(1)})


def test_infer_config_names_detection_only_checkpoints():
    # the detection-only DETR checkpoints: no "detr." prefix, no box attention, no mask head
    sd = {k[len("detr."):]: v for k, v in tsv_shapes("detr-r50-panoptic").items()
          if k.startswith("detr.")}
    with pytest.raises(errors.WeightsUnavailable, match="detection-only"):
        checkpoint.infer_config(sd, "detr-r50-e632da11.pth")


def test_infer_config_missing_entry_is_a_clear_error():
    sd = tsv_shapes("detr-r50-panoptic")
    del sd["detr.query_embed.weight"]
    with pytest.raises(errors.WeightsUnavailable, match="layout of a DETR panoptic checkpoint"):
        checkpoint.infer_config(sd)


def test_checkpoint_that_does_not_fit_its_model(tmp_path):
    from detr_viz import create_model
    from detr_viz.testing import TINY
    path = tmp_path / "tiny.pth"
    torch.save({"model": create_model(TINY, device="cpu").state_dict()}, path)
    assert create_model(path, device="cpu").config.num_queries == TINY.num_queries   # read from the file
    bigger = TINY.replace(num_queries=TINY.num_queries + 1)
    with pytest.raises(errors.WeightsUnavailable, match=r"does not fit .*1 shape mismatches.*query_embed"):
        create_model(bigger, weights=path, device="cpu")


def test_env_var_file_stands_for_the_model_its_name_hints(cache, tmp_path, monkeypatch):
    for file_name, model in [("my-dc5.pth", "detr-r50-dc5-panoptic"), ("r101-copy.pth", "detr-r101-panoptic"),
                             ("weights.pth", "detr-r50-panoptic")]:
        own = tmp_path / file_name
        own.write_bytes(b"x")
        monkeypatch.setenv(errors.ENV_VAR, str(own))
        bound = [name for name, e in registry.MODELS.items() if e.offline_path() == own]
        assert bound == [model]
