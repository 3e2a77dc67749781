"""What every page needs: the current image, model and trace, created on demand.

Every page calls `ensure_context()` first, so a page opened directly (a deep link on a fresh
server) works: with nothing chosen it uses the default sample image and the default model.
Models and traces live in `st.cache_resource` stores shared by all sessions; a trace is kept per
(model, image) so moving between pages never reruns the model.
"""
from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import streamlit as st

import detr_viz
from detr_viz import samples
from detr_viz.testing import make_confident, tiny_model
from detr_viz.weights import MODELS, WeightsUnavailable

APP_MODEL_ENV = "DETR_VIZ_APP_MODEL"     # force a model key (tests use "tiny-random")
TINY_RANDOM = "tiny-random"
MAX_TRACES = 6

# Session-state keys (plain keys, not widget keys, so they survive page switches).
K_IMAGE_BYTES, K_IMAGE_NAME, K_IMAGE_CREDIT = "image_bytes", "image_name", "image_credit"
K_MODEL, K_THRESHOLD, K_NOTES, K_QUERY = "model_key", "threshold", "notes", "query"


def model_label(key: str) -> str:
    if key == TINY_RANDOM:
        return "tiny random model (tests only: meaningless pictures)"
    if key.startswith("local:"):
        return f"local checkpoint {key[6:]}"
    e = MODELS.get(key)
    if e is None:
        return key
    pq = e.metrics.get("PQ")
    return f"{key} ({e.description}{f', PQ {pq}' if pq else ''})"


def official_keys() -> list[str]:
    return [k for k in MODELS if k != "toyworld"]


def weights_on_disk(key: str) -> bool:
    if key == TINY_RANDOM or key.startswith("local:"):
        return True
    try:
        return MODELS[key].available_offline()
    except Exception:
        return False


def default_model_key() -> tuple[str, str | None]:
    """(key, note): an official model if its weights are here, else the offline toy-world model."""
    forced = os.environ.get(APP_MODEL_ENV)
    if forced:
        return forced, None
    for key in official_keys():
        if weights_on_disk(key):
            return key, None
    if weights_on_disk("toyworld"):
        return "toyworld", ("The official COCO weights are not on this machine (and may not be downloadable "
                            "here), so the app uses its own offline **toyworld** model. Choose an official "
                            "model on the Home page to download it (about 165 MB).")
    return TINY_RANDOM, ("No trained weights are on this machine: neither the official COCO checkpoints nor "
                         "the shipped toyworld model. The pictures below come from a random model and mean nothing.")


@st.cache_resource(show_spinner=False, max_entries=4)
def load_model(key: str):
    """Build a model (weights already on disk: downloads happen on the Home page, with a bar)."""
    if key == TINY_RANDOM:           # random weights; a hook makes a few queries confident
        model = make_confident(tiny_model(seed=1)).to(detr_viz.select_device())
        model.model_name, model.weights_source = TINY_RANDOM, "random initialisation (test mode)"
        return model
    if key.startswith("local:"):
        return detr_viz.create_model(key[6:])
    return detr_viz.create_model(key, weights="official")


class TraceStore:
    """A small LRU of traces shared by all sessions (max MAX_TRACES)."""

    def __init__(self, size: int):
        self.size, self.items, self.lock = size, OrderedDict(), threading.Lock()

    def get(self, key):
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
                return self.items[key]
        return None

    def put(self, key, value):
        with self.lock:
            self.items[key] = value
            self.items.move_to_end(key)
            while len(self.items) > self.size:
                self.items.popitem(last=False)


@st.cache_resource(show_spinner=False)
def trace_store() -> TraceStore:
    return TraceStore(MAX_TRACES)


@dataclass
class Context:
    image_name: str
    image_bytes: bytes
    image_credit: str
    model_key: str
    model: object
    trace: detr_viz.Trace
    notes: list = field(default_factory=list)

    @property
    def threshold(self) -> float:
        return float(st.session_state.get(K_THRESHOLD, self.trace.threshold))

    @property
    def panoptic(self):
        """The merge at the session's threshold (cached on the trace)."""
        return merged(self.trace, self.threshold)


def memo(trace, key, fn):
    """Compute `fn()` once per trace (page-level caches that live as long as the trace)."""
    cache = trace.__dict__.setdefault("_page_cache", {})
    if key not in cache:
        cache[key] = fn()
    return cache[key]


def merged(trace, threshold: float):
    cache = trace.__dict__.setdefault("_merges", {})
    key = round(float(threshold), 4)
    if key not in cache:
        cache[key] = trace.panoptic if abs(key - trace.threshold) < 1e-9 else trace.merge(key)
    return cache[key]


def set_image(name: str, data: bytes, credit: str = "") -> None:
    """Make `data` the current image if it is a readable image; raises detr_viz.ImageError."""
    detr_viz.load_image(data)            # validate before replacing the previous image
    st.session_state[K_IMAGE_BYTES] = data
    st.session_state[K_IMAGE_NAME] = name
    st.session_state[K_IMAGE_CREDIT] = credit
    st.session_state.pop(K_QUERY, None)


def _default_image(model_key: str):
    cats = "toyworld" if model_key == "toyworld" else "coco"
    s = samples.default_sample(cats)
    return s.path.name, s.read_bytes(), s.credit


def ensure_context() -> Context:
    """The image, model and trace of this session, computing whatever is missing."""
    ss = st.session_state
    notes = []
    if K_MODEL not in ss:
        key, note = default_model_key()
        ss[K_MODEL] = key
        if note:
            ss[K_NOTES] = [note]
    key = ss[K_MODEL]
    if K_IMAGE_BYTES not in ss:
        ss[K_IMAGE_NAME], ss[K_IMAGE_BYTES], ss[K_IMAGE_CREDIT] = _default_image(key)
    notes += ss.get(K_NOTES, [])
    try:
        with st.spinner(f"Loading model {key} ..."):
            model = load_model(key)
    except (WeightsUnavailable, ValueError, RuntimeError) as e:
        fallback = "toyworld" if weights_on_disk("toyworld") and key != "toyworld" else TINY_RANDOM
        notes.append(f"Could not load model **{key}**: {e} Falling back to **{fallback}**.")
        ss[K_MODEL] = key = fallback
        ss[K_NOTES] = notes
        model = load_model(key)
    trace = get_trace(key, model, ss[K_IMAGE_BYTES], ss[K_IMAGE_NAME])
    return Context(ss[K_IMAGE_NAME], ss[K_IMAGE_BYTES], ss.get(K_IMAGE_CREDIT, ""), key, model, trace, notes)


def get_trace(model_key: str, model, image_bytes: bytes, image_name: str) -> detr_viz.Trace:
    """The cached trace of this image under this model, or a new one with progress by step."""
    store = trace_store()
    key = (model_key, hashlib.sha1(image_bytes).hexdigest())
    t = store.get(key)
    if t is not None:
        return t
    with st.status(f"Running DETR on {image_name} ...", expanded=True) as status:
        def progress(step: int, text: str):
            status.update(label=f"Step {step} of 7: {text} ...")
            status.write(f"Step {step} of 7: {text}")
        t = detr_viz.trace(model, image_bytes, progress=progress)
        status.update(label=f"Traced {image_name} in {t.total_time:.2f} s on {t.device_name}",
                      state="complete", expanded=False)
    store.put(key, t)
    return t
