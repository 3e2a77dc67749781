"""Model policy of the app: which models exist, which one a session starts with, which a URL may
name, loading them (shared by all sessions) and downloading official weights with a progress bar."""
from __future__ import annotations

import logging
import os
import re
import sys

import streamlit as st

import detr_viz
from detr_viz import MODELS, WeightsUnavailable
from detr_viz import registry as weights
from detr_viz.random_models import RANDOM_MODELS as _RANDOM
from detr_viz.random_models import build_random_model

log = logging.getLogger("detr_viz.app")

APP_MODEL_ENV = "DETR_VIZ_APP_MODEL"     # force a model key (tests use "tiny-random")
TINY_RANDOM = "tiny-random"
R50_RANDOM = "r50-random"               # benchmarks: official R50 sizes, random weights
RANDOM_MODELS = {key: m.description for key, m in _RANDOM.items()}     # key -> description (the library's table)
LOCAL_PREFIX = "local:"
CATEGORIES_SEP = "::categories="       # local:<model path>::categories=<categories file path>


def model_label(key: str) -> str:
    if key in RANDOM_MODELS:
        return RANDOM_MODELS[key]
    if key.startswith(LOCAL_PREFIX):
        path, cats = split_local_key(key)
        return f"your model {_short(path)}" + (f" with the categories of {os.path.basename(cats)}" if cats else "")
    e = MODELS.get(key)
    if e is None:
        return key
    pq = e.metrics.get("PQ")
    return f"{key} ({e.description}{f', PQ {pq}' if pq else ''})"


def _short(path: str) -> str:
    """A model path as the app names it: its file or folder name, with the folder above unless that is
    an upload folder (a sha256) or a Hugging Face snapshot."""
    parent, name = os.path.split(path.rstrip("/"))
    above = os.path.basename(parent)
    if re.fullmatch(r"[0-9a-f]{40,64}", above) or not above:
        return name
    return f"{above}/{name}"


def _without_folders(text: str) -> str:
    """'categories file /tmp/x/site.json' -> 'categories file site.json'."""
    return re.sub(r"(?<!\S)/\S*/", "", text)


def local_key(path, categories=None) -> str:
    """The model key of a model file/folder on this server, with an optional categories file."""
    key = f"{LOCAL_PREFIX}{os.path.abspath(os.path.expanduser(str(path)))}"
    if categories:
        key += CATEGORIES_SEP + os.path.abspath(os.path.expanduser(str(categories)))
    return key


def split_local_key(key: str) -> tuple[str, str | None]:
    """`local:<path>[::categories=<file>]` -> (path, categories file or None)."""
    path, _, cats = key[len(LOCAL_PREFIX):].partition(CATEGORIES_SEP)
    return path, cats or None


def official_keys() -> list[str]:
    return [k for k in MODELS if k != "toyworld"]


def weights_on_disk(key: str) -> bool:
    """Are this model's weights on this machine (no download needed)? Unknown keys: False."""
    if key in RANDOM_MODELS or key.startswith(LOCAL_PREFIX):
        return True
    entry = MODELS.get(key)
    if entry is None:
        return False
    try:
        return entry.available_offline()
    except (OSError, WeightsUnavailable) as e:      # an unreadable cache folder: not available, and say why
        log.warning("cannot tell whether the weights of %s are here: %s", key, e)
        return False


def _cli_option(name: str, argv=None) -> str | None:
    args = list(sys.argv[1:] if argv is None else argv)
    for i, a in enumerate(args):
        if a == name and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return None


def cli_checkpoint(argv=None) -> str | None:
    """The path given as `streamlit run app.py -- --checkpoint PATH` (or --checkpoint=PATH): a
    checkpoint file or a Hugging Face model folder."""
    return _cli_option("--checkpoint", argv)


def cli_categories(argv=None) -> str | None:
    """The categories file given as `streamlit run app.py -- --checkpoint PATH --categories FILE`."""
    return _cli_option("--categories", argv)


def default_model_key() -> tuple[str, str | None]:
    """(key, note): the --checkpoint file if the app was started with one, else an official model
    if its weights are here, else the offline toy-world model."""
    forced = os.environ.get(APP_MODEL_ENV)
    if forced:
        return forced, None
    path = cli_checkpoint()
    if path:
        p = os.path.abspath(os.path.expanduser(path))
        if os.path.exists(p):
            key = local_key(p, cli_categories())
            local_checkpoints().add(key[len(LOCAL_PREFIX):])
            return key, None
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
        model = build_random_model(key).to(detr_viz.select_device())
        model.model_name, model.weights_source = key, "random initialisation (test mode)"
        return model
    if key.startswith(LOCAL_PREFIX):
        path, cats = split_local_key(key)
        return detr_viz.create_model(path, categories=cats)
    return detr_viz.create_model(key, weights="official")


@st.cache_resource(show_spinner=False)
def local_checkpoints() -> set:
    """Local models chosen on this server, as `<path>[::categories=<file>]` (the key without its
    prefix): only these may come back through a URL."""
    return set()


def model_allowed(key: str) -> bool:
    """May a URL select this model? Registry models whose weights are here (a link never starts
    a download), local checkpoints already used on this server, and the test model."""
    if key in RANDOM_MODELS:
        return True
    if key.startswith(LOCAL_PREFIX):
        return key[len(LOCAL_PREFIX):] in local_checkpoints()
    return key in MODELS and weights_on_disk(key)


def offline_model_key() -> str:
    """The model to fall back to without a network: toyworld if shipped, else the random test model."""
    return "toyworld" if weights_on_disk("toyworld") else TINY_RANDOM


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


def source_lines(model) -> list[str]:
    """What the sidebar says of a model's files: format, where its architecture and its
    categories came from, and whether thing/stuff is a guess."""
    src = getattr(model, "source", None) or {}
    lines = []
    if src.get("format"):
        lines.append(f"Format: {src['format']}")
    if src.get("architecture"):
        lines.append(f"Architecture from: {src['architecture']}")
    cats = getattr(model, "categories", None)
    if cats is not None:
        cfg = getattr(model, "config", None)
        n = f"{cfg.num_classes} classes, {cfg.num_queries} queries; " if cfg is not None else ""
        lines.append(f"Categories: {n}{_without_folders(str(cats.source))}")
        if cats.isthing_guessed:
            lines.append("Thing/stuff is a guess (no categories file): every class is treated as a thing. "
                         "Give a categories file on the Home page.")
    return lines


def found_models() -> dict[str, str]:
    """Models found on this machine without a network call: path -> label. Hugging Face cache
    folders (`models--org--name` with a DetrForSegmentation config) and `.pth` files in the torch
    hub checkpoints folder (the registry's own files are the official models, listed above)."""
    from detr_viz.formats import huggingface

    found = {}
    for root in huggingface.cache_roots():
        for repo in sorted(root.glob("models--*--*")) if root.is_dir() else []:
            snap = huggingface.find(repo)
            if snap is not None and _is_detr_segmentation(snap / "config.json"):
                found[str(repo)] = "Hugging Face cache · " + repo.name[len("models--"):].replace("--", "/", 1)
    hub = os.path.join(torch_hub_dir(), "checkpoints")
    official = {e.file_name for e in MODELS.values()}
    if os.path.isdir(hub):
        for name in sorted(os.listdir(hub)):
            if name.endswith(".pth") and name not in official:
                found[os.path.join(hub, name)] = f"torch hub checkpoints · {name}"
    return found


def torch_hub_dir() -> str:
    import torch
    return torch.hub.get_dir()


def _is_detr_segmentation(config) -> bool:
    import json
    try:
        return "DetrForSegmentation" in (json.loads(config.read_text()).get("architectures") or [])
    except (OSError, ValueError, AttributeError):
        return False
