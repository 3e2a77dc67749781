"""What every page needs: the current image, model and trace, created on demand.

Every page calls `ensure_context()` first, so a page opened directly (a deep link on a fresh
server) works: with nothing chosen it uses the default sample image and the default model.
The pieces live in their own modules: `ui.models` (which models, loading, downloads),
`ui.session` (session keys, the image choice, the URL) and `ui.traces` (the shared trace store
within its memory budget, and the queue that computes traces in turn). This module builds the
`Context` of a run from them and re-exports the names pages use (`state.K_IMAGE_NAME`, ...).

A `Context` lives for one run of one page: it is never stored in session state, so a session
holds a trace only while a run uses it, and a trace the store evicts is really freed.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import streamlit as st

import detr_viz
from detr_viz import WeightsUnavailable
from detr_viz.explain.step7_merge import merged

from .models import (
    APP_MODEL_ENV,
    R50_RANDOM,
    RANDOM_MODELS,
    TINY_RANDOM,
    cli_checkpoint,
    default_model_key,
    download_weights,
    load_model,
    local_checkpoints,
    model_allowed,
    model_label,
    official_keys,
    offline_model_key,
    weights_on_disk,
)
from .session import (
    K_IMAGE_BYTES,
    K_IMAGE_CREDIT,
    K_IMAGE_HASH,
    K_IMAGE_NAME,
    K_IMAGE_SOURCE,
    K_MODEL,
    K_NOTES,
    K_QUERY,
    K_THRESHOLD,
    K_TRACED,
    QP_IMAGE,
    QP_MODEL,
    QP_THRESHOLD,
    ensure_choice,
    image_hash,
    set_image,
    set_sample,
    sync_url,
    upload_store,
    url_params,
    use_model,
)
from .traces import get_trace, remember, set_aside_note, trace_queue, trace_store

__all__ = [
    "APP_MODEL_ENV", "R50_RANDOM", "RANDOM_MODELS", "TINY_RANDOM", "cli_checkpoint", "default_model_key",
    "download_weights", "load_model", "local_checkpoints", "model_allowed", "model_label", "offline_model_key",
    "official_keys", "weights_on_disk",
    "K_IMAGE_BYTES", "K_IMAGE_CREDIT", "K_IMAGE_HASH", "K_IMAGE_NAME", "K_IMAGE_SOURCE", "K_MODEL", "K_NOTES",
    "K_QUERY", "K_THRESHOLD", "K_TRACED", "QP_IMAGE", "QP_MODEL", "QP_THRESHOLD", "ensure_choice", "image_hash",
    "set_image", "set_sample", "sync_url", "upload_store", "url_params", "use_model",
    "get_trace", "trace_queue", "trace_store", "Context", "ensure_context",
]

TOYWORLD_ON_A_PHOTO = (
    "The **toyworld** model knows only the toy world: 4 shapes (circle, square, triangle, star) and 4 backgrounds "
    "(sky, grass, water, road), at {size} pixels. On a photo it answers in those terms, so its labels are guesses; "
    "the steps are still real. Pick a toy-world scene on the Home page to see it work, or an official COCO model "
    "for photos.")


@dataclass
class Context:
    image_name: str
    image_bytes: bytes
    image_credit: str
    model_key: str
    model: object
    trace: detr_viz.Trace
    notes: list = field(default_factory=list)
    image_hash: str = ""

    @property
    def trace_key(self) -> tuple:
        """A stable name of the trace (model, image hash): unlike id(trace), never reused."""
        return (self.model_key, self.image_hash)

    @property
    def threshold(self) -> float:
        return float(st.session_state.get(K_THRESHOLD, self.trace.threshold))

    @property
    def panoptic(self):
        """The merge at the session's threshold (cached on the trace)."""
        return merged(self.trace, self.threshold)


def _session_model(ss):
    """The session's model, loaded (shared by all sessions); falls back with a note if it cannot load."""
    key = ss[K_MODEL]
    try:
        with st.spinner(f"Loading model {key} ..."):
            return key, load_model(key)
    except (WeightsUnavailable, ValueError, RuntimeError) as e:
        fallback = offline_model_key() if key != "toyworld" else TINY_RANDOM
        ss[K_NOTES] = ss.get(K_NOTES, []) + [f"Could not load model **{key}**: {e} Falling back to **{fallback}**."]
        ss[K_MODEL] = fallback
        return fallback, load_model(fallback)


def ensure_context() -> Context:
    """The image, model and trace of this session, computing whatever is missing."""
    ensure_choice()
    ss = st.session_state
    key, model = _session_model(ss)
    trace_key = (key, ss[K_IMAGE_HASH])
    notes = list(ss.get(K_NOTES, []))
    again = set_aside_note(ss, trace_key)
    if again:
        notes.append(again)
    trace = get_trace(key, model, ss[K_IMAGE_BYTES], ss[K_IMAGE_NAME], ss[K_IMAGE_HASH])
    remember(ss, trace_key)
    trace_store().touch(trace_key)          # count what earlier runs derived from it against the budget
    sync_url()
    if model.config.categories == "toyworld" and not str(ss.get(K_IMAGE_SOURCE, "")).startswith("toy:"):
        notes.append(TOYWORLD_ON_A_PHOTO.format(size=model.config.input_size))
    return Context(ss[K_IMAGE_NAME], ss[K_IMAGE_BYTES], ss.get(K_IMAGE_CREDIT, ""), key, model, trace, notes,
                   ss[K_IMAGE_HASH])
