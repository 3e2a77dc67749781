"""What every page needs: the current image, model and trace, created on demand.

Every page calls `ensure_context()` first, so a page opened directly (a deep link on a fresh
server) works: with nothing chosen it uses the default sample image and the default model.
Models and traces live in `st.cache_resource` stores shared by all sessions; a trace is kept per
(model, image) so moving between pages never reruns the model.

The URL carries the choice (`?image=...&model=...`): a link that reloads the page (the Home
diagram's boxes, a browser reload, a link shared with the class) starts a new session, and that
session takes its image and model from the URL. Samples are named by their key; uploads by a hash,
looked up in a server-side store of recent uploads.
"""
from __future__ import annotations

import hashlib
import os
import sys
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import streamlit as st

import detr_viz
from detr_viz import MODELS, WeightsUnavailable, samples
from detr_viz import registry as weights
from detr_viz.config import R50_PANOPTIC
from detr_viz.explain import step7_merge
from detr_viz.random_models import make_confident, tiny_model

APP_MODEL_ENV = "DETR_VIZ_APP_MODEL"     # force a model key (tests use "tiny-random")
TINY_RANDOM = "tiny-random"
R50_RANDOM = "r50-random"               # benchmarks: official R50 sizes, random weights
RANDOM_MODELS = {TINY_RANDOM: "tiny random model (tests only: meaningless pictures)",
                 R50_RANDOM: "R50 panoptic with random weights (benchmarks only: meaningless pictures)"}
MAX_TRACES = 6

# Session-state keys (plain keys, not widget keys, so they survive page switches).
K_IMAGE_BYTES, K_IMAGE_NAME, K_IMAGE_CREDIT = "image_bytes", "image_name", "image_credit"
K_MODEL, K_THRESHOLD, K_NOTES, K_QUERY = "model_key", "threshold", "notes", "query"
K_IMAGE_SOURCE = "image_source"         # "photo:<file>", "toy:<file>" or "upload:<hash>"
K_IMAGE_HASH = "image_hash"             # sha1 of the image bytes (computed once, in set_image)
# URL query parameters.
QP_IMAGE, QP_MODEL, QP_THRESHOLD = "image", "model", "threshold"
MAX_UPLOADS = 24                        # uploads kept server-side for links (LRU)


def model_label(key: str) -> str:
    if key in RANDOM_MODELS:
        return RANDOM_MODELS[key]
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
    if key in RANDOM_MODELS or key.startswith("local:"):
        return True
    try:
        return MODELS[key].available_offline()
    except Exception:
        return False


def cli_checkpoint(argv=None) -> str | None:
    """The path given as `streamlit run app.py -- --checkpoint PATH` (or --checkpoint=PATH)."""
    args = list(sys.argv[1:] if argv is None else argv)
    for i, a in enumerate(args):
        if a == "--checkpoint" and i + 1 < len(args):
            return args[i + 1]
        if a.startswith("--checkpoint="):
            return a.split("=", 1)[1]
    return None


def default_model_key() -> tuple[str, str | None]:
    """(key, note): the --checkpoint file if the app was started with one, else an official model
    if its weights are here, else the offline toy-world model."""
    forced = os.environ.get(APP_MODEL_ENV)
    if forced:
        return forced, None
    path = cli_checkpoint()
    if path:
        p = os.path.abspath(os.path.expanduser(path))
        if os.path.isfile(p):
            local_checkpoints().add(p)
            return f"local:{p}", None
        key, note = _default_without_checkpoint()
        return key, (f"The app was started with --checkpoint {path}, but there is no such file; using "
                     f"**{key}** instead. " + (note or ""))
    return _default_without_checkpoint()


def _default_without_checkpoint() -> tuple[str, str | None]:
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
    if key in RANDOM_MODELS:         # random weights; a hook makes a few queries confident
        base = tiny_model(seed=1) if key == TINY_RANDOM else tiny_model(R50_PANOPTIC, seed=0)
        model = make_confident(base).to(detr_viz.select_device())
        model.model_name, model.weights_source = key, "random initialisation (test mode)"
        return model
    if key.startswith("local:"):
        return detr_viz.create_model(key[6:])
    return detr_viz.create_model(key, weights="official")


class TraceStore:
    """A small LRU shared by all sessions: at most `size` items and, if `max_bytes` is given, at
    most that much memory (`size_of(value)` bytes each; the newest item always stays). A lock per
    key being computed (`key_lock`) makes sure two reruns never trace the same image and model at
    once."""

    def __init__(self, size: int, max_bytes: int | None = None, size_of=None):
        self.size, self.items, self.lock = size, OrderedDict(), threading.Lock()
        self.max_bytes, self.size_of = max_bytes, size_of
        self.busy: dict = {}                 # key -> threading.Lock, while that key is being computed

    def key_lock(self, key) -> threading.Lock:
        with self.lock:
            return self.busy.setdefault(key, threading.Lock())

    def release_key(self, key) -> None:
        """Forget the key's lock once its value is stored (a later caller finds the value first)."""
        with self.lock:
            self.busy.pop(key, None)

    def get(self, key):
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
                return self.items[key]
        return None

    def nbytes(self) -> int:
        with self.lock:
            return sum(self.size_of(v) for v in self.items.values()) if self.size_of else 0

    def put(self, key, value):
        with self.lock:
            self.items[key] = value
            self.items.move_to_end(key)
            while len(self.items) > self.size:
                self.items.popitem(last=False)
            if self.max_bytes is not None and self.size_of is not None:
                sizes = {k: self.size_of(v) for k, v in self.items.items()}   # traces grow as queries are added
                total = sum(sizes.values())
                while total > self.max_bytes and len(self.items) > 1:
                    old, _ = self.items.popitem(last=False)
                    total -= sizes[old]


def _megabytes_env(name: str, default: int) -> int:
    try:
        return int(float(os.environ.get(name, default)) * 1e6)
    except ValueError:
        return int(default * 1e6)


@st.cache_resource(show_spinner=False)
def trace_store() -> TraceStore:
    """Traces of the last images (a full-size R50 trace holds about 400 MB): at most MAX_TRACES,
    and at most $DETR_VIZ_TRACE_MEMORY_MB (default 2000) megabytes, so that a class uploading many
    photos does not exhaust the laptop's memory."""
    return TraceStore(MAX_TRACES, _megabytes_env("DETR_VIZ_TRACE_MEMORY_MB", 2000), lambda t: t.nbytes)


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
        return step7_merge.merged(self.trace, self.threshold)


MEMO_KEEP = 16                          # values kept per memo group (LRU)
MERGES_KEEP = 8                         # merges kept per trace (thresholds, LRU)
_CACHE_LOCK = threading.Lock()          # Streamlit runs sessions in threads; every cache below shares it


def bounded(store: OrderedDict, key, fn, keep: int = MEMO_KEEP):
    """Cache fn() in `store` under `key`, keeping only the `keep` most recently used keys (LRU), so
    that clicking through queries, layers or thresholds does not pile up pictures on a shared
    server. Thread-safe; fn() runs outside the lock (two sessions may compute the same value once
    each, and the second one wins)."""
    with _CACHE_LOCK:
        if key in store:
            store.move_to_end(key)
            return store[key]
    value = fn()
    with _CACHE_LOCK:
        store[key] = value
        store.move_to_end(key)
        while len(store) > keep:
            store.popitem(last=False)
    return value


def _trace_cache(trace, name: str, factory=dict):
    """A cache (factory()) kept on the trace itself: it goes when the trace leaves the TraceStore."""
    with _CACHE_LOCK:
        return trace.__dict__.setdefault(name, factory())


def memo(trace, key, fn, keep: int = MEMO_KEEP):
    """fn(), cached on the trace under `key`: a name, or a tuple (name, widget values ...).

    Each name is one LRU group of at most `keep` values, so a picture keyed by a query, a layer or
    a threshold keeps only its `keep` most recent versions."""
    group = key[0] if isinstance(key, tuple) else key
    groups = _trace_cache(trace, "_page_cache")
    with _CACHE_LOCK:
        store = groups.setdefault(group, OrderedDict())
    return bounded(store, key, fn, keep)


def merged(trace, threshold: float):
    """The merge at `threshold` (the trace's own merge at its threshold), the last MERGES_KEEP kept."""
    key = round(float(threshold), 4)
    store = _trace_cache(trace, "_merges", OrderedDict)
    return bounded(store, key, lambda: trace.panoptic if abs(key - trace.threshold) < 1e-9 else trace.merge(key),
                   MERGES_KEEP)


def image_hash(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


@st.cache_resource(show_spinner=False)
def upload_store() -> TraceStore:
    """Recent uploads, by "upload:<hash>", so that a link carrying that name finds the image."""
    return TraceStore(MAX_UPLOADS, 400_000_000, lambda item: len(item[1]))    # (name, bytes, credit)


def set_image(name: str, data: bytes, credit: str = "", source: str | None = None) -> None:
    """Make `data` the current image if it is a readable image; raises detr_viz.ImageError.

    source: the sample key ("photo:<file>", "toy:<file>"); None for an upload."""
    detr_viz.load_image(data)            # validate before replacing the previous image
    digest = image_hash(data)
    if source is None:
        source = f"upload:{digest[:16]}"
        upload_store().put(source, (name, data, credit))
    ss = st.session_state
    ss[K_IMAGE_BYTES], ss[K_IMAGE_NAME], ss[K_IMAGE_CREDIT], ss[K_IMAGE_SOURCE] = data, name, credit, source
    ss[K_IMAGE_HASH] = digest
    ss.pop(K_QUERY, None)


def set_sample(key: str) -> None:
    """Make a shipped sample (photo or toy-world scene) the current image."""
    s = samples.get_sample(key)
    set_image(s.path.name, s.read_bytes(), s.credit, source=s.key)


def _default_image(model_key: str):
    cats = "toyworld" if model_key == "toyworld" else "coco"
    s = samples.default_sample(cats)
    return s.path.name, s.read_bytes(), s.credit, s.key


# ---- models: choices, switching, downloads ----------------------------------------------------
@st.cache_resource(show_spinner=False)
def local_checkpoints() -> set:
    """Local checkpoint paths chosen on this server (only these may come back through a URL)."""
    return set()


def model_allowed(key: str) -> bool:
    """May a URL select this model? Registry models whose weights are here (a link never starts
    a download), local checkpoints already used on this server, and the test model."""
    if key in RANDOM_MODELS:
        return True
    if key.startswith("local:"):
        return key[6:] in local_checkpoints()
    return key in MODELS and weights_on_disk(key)


def offline_model_key() -> str:
    """The model to fall back to without a network: toyworld if shipped, else the random test model."""
    return "toyworld" if weights_on_disk("toyworld") else TINY_RANDOM


def use_model(key: str) -> None:
    """Make `key` the session's model (its weights must be on disk); earlier model notes go."""
    if key.startswith("local:"):
        local_checkpoints().add(key[6:])
    st.session_state[K_MODEL] = key
    st.session_state[K_NOTES] = []
    st.session_state.pop(K_QUERY, None)


def download_weights(key: str, container=None) -> None:
    """Fetch an official checkpoint with a progress bar (raises WeightsUnavailable).

    Runs outside every st.cache function: the bar's callback must not be replayed from a cache."""
    target = container or st
    entry = MODELS[key]
    size = f" (about {entry.size_bytes / 1e6:.0f} MB)" if entry.size_bytes else ""
    bar = target.progress(0.0, text=f"Downloading {entry.file_name}{size} ...")
    last = [-1]

    def progress(done: int, total: int | None) -> None:
        pct = int(100 * done / total) if total else -1
        if pct != last[0] or not total:
            last[0] = pct
            text = (f"Downloading {entry.file_name}: {done / 1e6:.0f} of {total / 1e6:.0f} MB" if total
                    else f"Downloading {entry.file_name}: {done / 1e6:.0f} MB")
            bar.progress(min(1.0, done / total) if total else 0.0, text=text)
    try:
        weights.fetch(key, progress=progress)
    finally:
        bar.empty()


# ---- the URL ------------------------------------------------------------------------------------------
def _restore_from_url(ss) -> list[str]:
    """Take image, model and threshold from the URL into a new session; returns notes."""
    notes = []
    qp = st.query_params
    img = qp.get(QP_IMAGE)
    if img and K_IMAGE_BYTES not in ss:
        try:
            if img.startswith("upload:"):
                found = upload_store().get(img)
                if found is None:
                    raise KeyError(img)
                set_image(*found)
            else:
                set_sample(img)
        except (KeyError, detr_viz.ImageError):
            notes.append("The image this link names is no longer on the server (uploads are kept only for a "
                         "while). Showing a sample photo instead: pick your image again on the Home page.")
    model = qp.get(QP_MODEL)
    if model and K_MODEL not in ss and not os.environ.get(APP_MODEL_ENV):
        if model_allowed(model):
            ss[K_MODEL] = model
        else:
            notes.append(f"This link asks for the model **{model}**, which is not ready on this server. "
                         "Choose it on the Home page (official weights are downloaded there).")
    thr = qp.get(QP_THRESHOLD)
    if thr and K_THRESHOLD not in ss:
        try:
            ss[K_THRESHOLD] = min(0.99, max(0.0, float(thr)))
        except ValueError:
            pass
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
        key, note = default_model_key()
        ss[K_MODEL] = key
        if note:
            ss[K_NOTES] = ss.get(K_NOTES, []) + [note]
    if K_IMAGE_BYTES not in ss:
        ss[K_IMAGE_NAME], ss[K_IMAGE_BYTES], ss[K_IMAGE_CREDIT], ss[K_IMAGE_SOURCE] = _default_image(ss[K_MODEL])
    if K_IMAGE_HASH not in ss:               # the default image (set_image stores the hash of any other)
        ss[K_IMAGE_HASH] = image_hash(ss[K_IMAGE_BYTES])


def ensure_context() -> Context:
    """The image, model and trace of this session, computing whatever is missing."""
    ensure_choice()
    ss = st.session_state
    key = ss[K_MODEL]
    try:
        with st.spinner(f"Loading model {key} ..."):
            model = load_model(key)
    except (WeightsUnavailable, ValueError, RuntimeError) as e:
        fallback = offline_model_key() if key != "toyworld" else TINY_RANDOM
        ss[K_NOTES] = ss.get(K_NOTES, []) + [f"Could not load model **{key}**: {e} Falling back to **{fallback}**."]
        ss[K_MODEL] = key = fallback
        model = load_model(key)
    trace = get_trace(key, model, ss[K_IMAGE_BYTES], ss[K_IMAGE_NAME], ss[K_IMAGE_HASH])
    sync_url()
    notes = list(ss.get(K_NOTES, []))
    if model.config.categories == "toyworld" and not str(ss.get(K_IMAGE_SOURCE, "")).startswith("toy:"):
        notes.append("The **toyworld** model knows only the toy world: 4 shapes (circle, square, triangle, star) "
                     f"and 4 backgrounds (sky, grass, water, road), at {model.config.input_size} pixels. On a photo "
                     "it answers in those terms, so its labels are guesses; the steps are still real. Pick a "
                     "toy-world scene on the Home page to see it work, or an official COCO model for photos.")
    return Context(ss[K_IMAGE_NAME], ss[K_IMAGE_BYTES], ss.get(K_IMAGE_CREDIT, ""), key, model, trace, notes,
                   ss[K_IMAGE_HASH])


def get_trace(model_key: str, model, image_bytes: bytes, image_name: str, digest: str) -> detr_viz.Trace:
    """The cached trace of this image under this model, or a new one with progress by step.

    digest: the image's `image_hash`. One lock per (model, image): a second rerun asking for a
    trace being computed waits for it instead of tracing again."""
    store = trace_store()
    key = (model_key, digest)
    t = store.get(key)
    if t is not None:
        return t
    lock = store.key_lock(key)
    if not lock.acquire(blocking=False):
        with st.spinner(f"{image_name} is being traced (another page or session started it) ..."):
            lock.acquire()
    try:
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
    finally:
        store.release_key(key)
        lock.release()
