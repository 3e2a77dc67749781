"""A session's choice: its session-state keys, the image (sample or upload) and model it uses,
and the URL that carries the choice (`?image=...&model=...&threshold=...`).

Sessions keep plain values and keys only (image bytes, names, the model key), never a trace or a
model: those live in shared stores and are fetched by key on every run. The URL is checked like any
other input from the browser: a value that is too long, names no known image or model, or is not a
threshold between 0 and 0.99 gets a short note, and the default takes over.
"""
from __future__ import annotations

import hashlib
import math
import os
import re

import streamlit as st

import detr_viz
from detr_viz import samples
from detr_viz.store import UploadStore

from . import models

# Session-state keys (plain keys, not widget keys, so they survive page switches).
K_IMAGE_BYTES, K_IMAGE_NAME, K_IMAGE_CREDIT = "image_bytes", "image_name", "image_credit"
K_MODEL, K_THRESHOLD, K_NOTES, K_QUERY = "model_key", "threshold", "notes", "query"
K_IMAGE_SOURCE = "image_source"         # "photo:<file>", "toy:<file>" or "upload:<hash>"
K_IMAGE_HASH = "image_hash"             # sha1 of the image bytes (computed once, in set_image)
K_TRACED = "traced_keys"                # trace keys this session has had (to tell it when one was set aside)
# URL query parameters.
QP_IMAGE, QP_MODEL, QP_THRESHOLD = "image", "model", "threshold"
MAX_PARAM_CHARS = 300                   # longer URL values are refused unread (a local path fits)
UPLOAD_KEY = re.compile(r"upload:[0-9a-f]{16}")
MAX_UPLOADS = 24                        # uploads kept server-side for links (LRU) ...
MAX_UPLOAD_STORE_BYTES = 200_000_000    # ... and at most this many bytes of them
THRESHOLD_MAX = 0.99


def image_hash(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


@st.cache_resource(show_spinner=False)
def upload_store() -> UploadStore:
    """Recent uploads, by "upload:<hash>", so that a link carrying that name finds the image."""
    return UploadStore(MAX_UPLOADS, MAX_UPLOAD_STORE_BYTES)


def max_upload_bytes() -> int:
    """The largest upload the server takes: `server.maxUploadSize` (MB) of .streamlit/config.toml."""
    return int(st.get_option("server.maxUploadSize")) * 1024 * 1024


def set_image(name: str, data: bytes, credit: str = "", source: str | None = None) -> None:
    """Make `data` the current image if it is a readable image; raises detr_viz.ImageError.

    source: the sample key ("photo:<file>", "toy:<file>"); None for an upload (checked against the
    upload limit: the browser enforces it too, but a request may come from elsewhere)."""
    if source is None and len(data) > max_upload_bytes():
        raise detr_viz.ImageError(
            f"The file is {len(data) / 2**20:.0f} MB; this server takes photos of up to "
            f"{max_upload_bytes() / 2**20:.0f} MB (server.maxUploadSize in .streamlit/config.toml). "
            "Upload a smaller photo (any phone photo resized to 2000 pixels is plenty).")
    detr_viz.load_image(data)            # validate before replacing the previous image
    digest = image_hash(data)
    if source is None:
        source = f"upload:{digest[:16]}"
        upload_store().put(source, name, data, credit)
    ss = st.session_state
    ss[K_IMAGE_BYTES], ss[K_IMAGE_NAME], ss[K_IMAGE_CREDIT], ss[K_IMAGE_SOURCE] = data, name, credit, source
    ss[K_IMAGE_HASH] = digest
    ss.pop(K_QUERY, None)


def set_sample(key: str) -> None:
    """Make a shipped sample (photo or toy-world scene) the current image."""
    s = samples.get_sample(key)
    set_image(s.path.name, s.read_bytes(), s.credit, source=s.key)


def default_image(model_key: str):
    cats = "toyworld" if model_key == "toyworld" else "coco"
    s = samples.default_sample(cats)
    return s.path.name, s.read_bytes(), s.credit, s.key


def use_model(key: str) -> None:
    """Make `key` the session's model (its weights must be on disk); earlier model notes go."""
    if key.startswith(models.LOCAL_PREFIX):
        models.local_checkpoints().add(key[len(models.LOCAL_PREFIX):])
    st.session_state[K_MODEL] = key
    st.session_state[K_NOTES] = []
    st.session_state.pop(K_QUERY, None)


# ---- the URL ------------------------------------------------------------------------------------------
def shown(value: str, limit: int = 40) -> str:
    """A URL value safe to quote in a note: printable, no markdown, at most `limit` characters."""
    clean = re.sub(r"[^A-Za-z0-9 ._:/+=-]", "?", value)
    return clean if len(clean) <= limit else clean[:limit] + f"... ({len(value)} characters)"


def parse_threshold(text: str) -> float | None:
    """A threshold from the URL: a finite number in [0, THRESHOLD_MAX], else None."""
    if len(text) > 32:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and 0.0 <= value <= THRESHOLD_MAX else None


def _restore_image(name: str) -> str | None:
    """Set the image a URL names; returns a note if it cannot."""
    gone = ("The image this link names is no longer on the server (uploads are kept only for a while). "
            "Showing a sample photo instead: pick your image again on the Home page.")
    if len(name) > MAX_PARAM_CHARS or not (UPLOAD_KEY.fullmatch(name) or name in {s.key for s in samples.all_samples()}):
        return (f"This link names an image the app does not know (`{shown(name)}`). Showing a sample photo "
                "instead: pick your image on the Home page.")
    try:
        if name.startswith("upload:"):
            found = upload_store().get(name)
            if found is None:
                return gone
            set_image(*found)
        else:
            set_sample(name)
    except (KeyError, OSError, detr_viz.ImageError):
        return gone
    return None


def _restore_from_url(ss) -> list[str]:
    """Take image, model and threshold from the URL into a new session; returns notes."""
    notes = []
    qp = st.query_params
    img = qp.get(QP_IMAGE)
    if img and K_IMAGE_BYTES not in ss:
        note = _restore_image(img)
        notes += [note] if note else []
    model = qp.get(QP_MODEL)
    if model and K_MODEL not in ss and not os.environ.get(models.APP_MODEL_ENV):
        if len(model) <= MAX_PARAM_CHARS and models.model_allowed(model):
            ss[K_MODEL] = model
        else:
            notes.append(f"This link asks for the model **{shown(model)}**, which is not ready on this server. "
                         "Using the default model; choose another on the Home page (official weights are "
                         "downloaded there).")
    thr = qp.get(QP_THRESHOLD)
    if thr and K_THRESHOLD not in ss:
        value = parse_threshold(thr)
        if value is None:
            notes.append(f"This link's threshold (`{shown(thr)}`) is not a number between 0 and "
                         f"{THRESHOLD_MAX}; using the model's own threshold.")
        else:
            ss[K_THRESHOLD] = value
    return notes


def url_params() -> dict:
    """The query parameters that name this session's image, model and threshold."""
    ss = st.session_state
    params = {}
    if ss.get(K_IMAGE_SOURCE):
        params[QP_IMAGE] = ss[K_IMAGE_SOURCE]
    if ss.get(K_MODEL):
        params[QP_MODEL] = ss[K_MODEL]
    if K_THRESHOLD in ss:
        params[QP_THRESHOLD] = f"{float(ss[K_THRESHOLD]):.2f}"
    return params


def sync_url() -> None:
    """Write `url_params()` into the address bar (a reload or a shared link shows the same)."""
    params = url_params()
    if any(st.query_params.get(k) != v for k, v in params.items()):
        st.query_params.update(params)


def ensure_choice() -> None:
    """The session's image and model choice (from the URL, else the defaults); runs nothing."""
    ss = st.session_state
    url_notes = _restore_from_url(ss)
    if url_notes:
        ss[K_NOTES] = ss.get(K_NOTES, []) + url_notes
    if K_MODEL not in ss:
        key, note = models.default_model_key()
        ss[K_MODEL] = key
        if note:
            ss[K_NOTES] = ss.get(K_NOTES, []) + [note]
    if K_IMAGE_BYTES not in ss:
        ss[K_IMAGE_NAME], ss[K_IMAGE_BYTES], ss[K_IMAGE_CREDIT], ss[K_IMAGE_SOURCE] = default_image(ss[K_MODEL])
    if K_IMAGE_HASH not in ss:               # the default image (set_image stores the hash of any other)
        ss[K_IMAGE_HASH] = image_hash(ss[K_IMAGE_BYTES])
