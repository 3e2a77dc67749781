"""Issue 9.3/9.4: a file named `...-<hex>.pth` must match that hash on every path that loads it,
and the hash cache notices a checkpoint rewritten in place."""
from __future__ import annotations

import os

import pytest
import torch
from conftest import REPO

import detr_viz
from detr_viz import hashing, registry
from detr_viz.__main__ import main as cli_main
from detr_viz.errors import ENV_VAR, ChecksumMismatch
from detr_viz.testing import TINY, tiny_model

NAME = "detr-r50-panoptic-00ce5173.pth"     # the official R50 file name: promises SHA-256 00ce5173...


@pytest.fixture
def impostor(tmp_path, monkeypatch):
    """A valid tiny checkpoint under the official R50 name, whose bytes hash otherwise."""
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    monkeypatch.delenv(ENV_VAR, raising=False)
    path = tmp_path / NAME
    torch.save({"model": tiny_model().state_dict(), "config": TINY.to_dict()}, path)
    actual = hashing.sha256_file(path)
    assert not actual.startswith("00ce5173")
    return path, actual[:8]


def assert_names_both(message: str, actual: str) -> None:
    assert "00ce5173" in message and actual in message, message


def test_create_model_from_a_path(impostor):
    path, actual = impostor
    with pytest.raises(ChecksumMismatch) as ei:
        detr_viz.create_model(path, device="cpu")
    assert_names_both(str(ei.value), actual)
    assert ei.value.expected == "00ce5173" and ei.value.got.startswith(actual)


def test_create_model_with_weights_path(impostor):
    path, actual = impostor
    with pytest.raises(ChecksumMismatch) as ei:
        detr_viz.create_model(TINY, weights=path, device="cpu")
    assert_names_both(str(ei.value), actual)


def test_cli_checkpoint(impostor, capsys):
    path, actual = impostor
    image = REPO / "assets" / "samples" / "chelsea.png"
    for args in (["--checkpoint", str(path)], ["--model", "detr-r50-panoptic", "--checkpoint", str(path)],
                 ["--model", str(path)]):
        assert cli_main([str(image), *args, "--device", "cpu", "--out", str(path.parent / "out")]) == 2
        err = capsys.readouterr().err
        assert_names_both(err, actual)
        assert "toyworld' model instead" not in err           # an explicit file is never swapped silently


def test_env_var_and_fetch_checkpoint(impostor, monkeypatch):
    path, actual = impostor
    with pytest.raises(ChecksumMismatch) as ei:
        registry.fetch("detr-r50-panoptic", checkpoint=path)
    assert_names_both(str(ei.value), actual)
    monkeypatch.setenv(ENV_VAR, str(path))                   # the app's DETR_VIZ_CHECKPOINT path
    with pytest.raises(ChecksumMismatch) as ei:
        detr_viz.create_model("detr-r50-panoptic", weights="official", device="cpu")
    assert_names_both(str(ei.value), actual)


def test_app_checkpoint(impostor, monkeypatch):
    """`streamlit run app.py -- --checkpoint detr-r50-panoptic-00ce5173.pth` with other bytes."""
    from app_helpers import app

    from ui import state
    path, actual = impostor
    monkeypatch.delenv(state.APP_MODEL_ENV, raising=False)
    monkeypatch.setattr("sys.argv", ["app.py", "--checkpoint", str(path)])
    at = app().run()
    assert not at.exception
    shown = " ".join(e.value for e in [*at.error, *at.warning, *at.code]) + " ".join(
        at.session_state[state.K_NOTES] if state.K_NOTES in at.session_state else [])
    assert_names_both(shown, actual)


# ---- 9.3: the hash cache --------------------------------------------------------------------
def test_rewritten_in_place_with_same_size_is_hashed_again(tmp_path):
    path = tmp_path / "c.pth"
    path.write_bytes(b"a" * 4096)
    first = hashing.sha256_file(path)
    ino = path.stat().st_ino
    with open(path, "r+b") as f:                              # same inode, same size, other bytes
        f.write(b"b" * 4096)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))   # a later mtime, as a rewrite has
    assert path.stat().st_ino == ino and path.stat().st_size == 4096
    assert hashing.sha256_file(path) != first
    assert hashing.sha256_file(path) == __import__("hashlib").sha256(b"b" * 4096).hexdigest()


def test_replaced_by_another_file_with_same_size_and_mtime_is_hashed_again(tmp_path):
    path, other = tmp_path / "c.pth", tmp_path / "new.pth"
    path.write_bytes(b"a" * 4096)
    first = hashing.sha256_file(path)
    st = path.stat()
    other.write_bytes(b"c" * 4096)
    os.utime(other, ns=(st.st_atime_ns, st.st_mtime_ns))      # same size and mtime: only the inode differs
    os.replace(other, path)
    assert hashing.sha256_file(path) != first
