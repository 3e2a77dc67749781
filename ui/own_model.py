"""Home's "Your model": a checkpoint uploaded or named by its path on the server, or a model found in
the local Hugging Face / torch hub caches, with an optional categories file.

Uploads are written to a server-side temp folder named by the file's sha256 and read only through
`detr_viz.create_model`'s safe loaders (weights_only / safetensors): nothing uploaded is executed.
A choice becomes the session's model key `local:<path>[::categories=<file>]` (ui.models); a file
that cannot be used gets a message and the previous model stays.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import traceback
from pathlib import Path

import streamlit as st

from detr_viz import WeightsUnavailable
from detr_viz.categories import CategoriesError

from . import models, session

CHECKPOINT_TYPES = ["pth", "pt", "bin", "safetensors"]
HF_WEIGHTS = {".safetensors": "model.safetensors", ".bin": "pytorch_model.bin"}
UPLOAD_DIR_ENV = "DETR_VIZ_UPLOAD_DIR"       # where uploaded models go (default: <tmp>/detr-viz-models)
W_SOURCE, W_CKPT, W_PATH, W_FOUND, W_CATS, W_USE = (
    "own_source", "own_checkpoint_upload", "own_path", "own_found", "own_categories_upload", "own_use")
K_OWN_ERROR = "own_model_error"
UPLOAD, PATH, FOUND = "Upload a checkpoint", "A path on the server", "Found on this machine"


class OwnModelError(ValueError):
    """A choice that cannot be used; the message says why and what to do."""


def upload_dir() -> Path:
    return Path(os.environ.get(UPLOAD_DIR_ENV) or Path(tempfile.gettempdir()) / "detr-viz-models")


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", Path(name).name)[-80:] or "model"


def _check_size(data: bytes, name: str) -> None:
    limit = session.max_upload_bytes()
    if len(data) > limit:
        raise OwnModelError(f"**{name}** is {len(data) / 2**20:.0f} MB; this server takes files of up to "
                            f"{limit / 2**20:.0f} MB (server.maxUploadSize in .streamlit/config.toml). Copy "
                            "the file to the server and give its path instead.")


def save_upload(name: str, data: bytes, config: bytes | None = None) -> Path:
    """Write an uploaded file to <upload dir>/<sha256>/<name> (once) and return its path.

    With `config` (a Hugging Face config.json), a `.safetensors`/`.bin` upload becomes a Hugging
    Face folder: the weights under their standard name next to config.json."""
    _check_size(data, name)
    digest = hashlib.sha256(data + (config or b"")).hexdigest()
    folder = upload_dir() / digest
    folder.mkdir(parents=True, exist_ok=True)
    suffix = Path(name).suffix.lower()
    if config is not None and suffix in HF_WEIGHTS:
        target = folder / HF_WEIGHTS[suffix]
        (folder / "config.json").write_bytes(config)
    else:
        target = folder / _safe_name(name)
    if not target.exists():
        tmp = target.with_suffix(target.suffix + ".part")
        tmp.write_bytes(data)
        tmp.replace(target)
    return folder if config is not None and suffix in HF_WEIGHTS else target


def is_hf_config(data: bytes) -> bool:
    try:
        doc = json.loads(data)
    except ValueError:
        return False
    return isinstance(doc, dict) and "DetrForSegmentation" in (doc.get("architectures") or [])


def _chosen_path(ss, source: str, cats_upload) -> Path:
    """The model file or folder of the choice (uploads saved first); raises OwnModelError. An uploaded
    .safetensors/.bin with a config.json as the categories file becomes a Hugging Face folder."""
    if source == UPLOAD:
        up = ss.get(W_CKPT)
        if up is None:
            raise OwnModelError("Choose a checkpoint file to upload first.")
        config = cats_upload.getvalue() if cats_upload is not None else None
        config = config if config is not None and is_hf_config(config) else None
        return save_upload(up.name, up.getvalue(), config)
    if source == PATH:
        text = (ss.get(W_PATH) or "").strip()
        p = Path(text).expanduser().resolve()
        if not text or not p.exists():
            raise OwnModelError(f"There is nothing at `{p}`. Check the path: it is a path on the machine running "
                                "the app, not on your computer (a Hugging Face model is a folder with config.json).")
        return p
    chosen = ss.get(W_FOUND)
    if not chosen:
        raise OwnModelError("No model was found in the local caches; upload a file or give a path instead.")
    return Path(chosen)


def choose(ss, source: str) -> str:
    """The model key of the current choice, loaded once to check it; raises OwnModelError."""
    cats_upload = ss.get(W_CATS)
    path = _chosen_path(ss, source, cats_upload)
    cats = None
    folded = source == UPLOAD and path.is_dir()          # the upload's config.json went into its folder
    if cats_upload is not None and not folded:
        _check_size(cats_upload.getvalue(), cats_upload.name)
        cats = save_upload(Path(cats_upload.name).stem + ".json", cats_upload.getvalue())
    key = models.local_key(path, cats)
    try:
        models.load_model(key)
    except (WeightsUnavailable, CategoriesError) as e:
        raise OwnModelError(str(e)) from e
    except Exception as e:                       # a file of any kind: say so, never a traceback on the page
        _log_failure(key)
        raise OwnModelError(f"{path.name} cannot be used as a DETR panoptic model ({type(e).__name__}: {e}).") from e
    return key


def _log_failure(key: str) -> None:
    logging.getLogger("detr_viz.app").warning("own model %s failed: %s", key, traceback.format_exc())


def own_model_section(use_model) -> None:
    """The "Your model" expander; `use_model(key)` makes a checked choice the session's model."""
    ss = st.session_state
    open_ = ss.get(session.K_MODEL, "").startswith(models.LOCAL_PREFIX) or K_OWN_ERROR in ss
    with st.expander("Your model: a checkpoint of your own training, or a Hugging Face model", expanded=open_):
        st.caption("A `checkpoint.pth` of the official training script (`main.py --masks`), an official or "
                   "detr-viz `.pth`, or a Hugging Face DetrForSegmentation folder (config.json + weights). "
                   "Files are read as weights only (never run), and the architecture is read from them.")
        found = models.found_models()
        sources = [UPLOAD, PATH] + ([FOUND] if found else [])
        source = st.radio("Where is it?", sources, key=W_SOURCE, horizontal=True)
        if source == UPLOAD:
            st.file_uploader("Checkpoint (.pth, .pt; a .safetensors or .bin with its config.json as the "
                             "categories file below)", type=CHECKPOINT_TYPES, key=W_CKPT)
        elif source == PATH:
            st.text_input("Path of a checkpoint file or a Hugging Face model folder on the machine running the app",
                          key=W_PATH, placeholder="runs/site/checkpoint.pth")
        else:
            st.selectbox("Model found in the Hugging Face cache or the torch hub checkpoints folder", list(found),
                         format_func=found.get, key=W_FOUND)
        st.file_uploader("Categories (optional): a COCO-panoptic categories JSON (list, or a dict with "
                         "\"categories\": id, name, isthing, color) or a Hugging Face config.json",
                         type=["json"], key=W_CATS)
        if st.button("Use this model", key=W_USE, type="primary"):
            ss.pop(K_OWN_ERROR, None)
            try:
                with st.spinner("Reading the model ..."):
                    use_model(choose(ss, source))
            except OwnModelError as e:
                ss[K_OWN_ERROR] = str(e)
        err = ss.pop(K_OWN_ERROR, None)             # shown once, until the next choice
        if err:
            st.error(f"{err}  \nThe previous model, **{models.model_label(ss[session.K_MODEL])}**, is still in use.")
