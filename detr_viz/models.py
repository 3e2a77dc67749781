"""`create_model`: build a DETR panoptic model by registry name, config or model file, with or without weights."""
from __future__ import annotations

from pathlib import Path

from .categories import get_categories, load_categories
from .config import DETRConfig
from .device import select_device
from .errors import WeightsUnavailable
from .formats import LoadedModel, huggingface, read_model
from .registry import MODELS, fetch
from .segmentation import DETRPanoptic

DEFAULT_MODEL = "detr-r50-panoptic"
OFFLINE_MODEL = "toyworld"


def _model_path(x) -> Path | None:
    """The model file/folder `x` names (a path, or a model in the local Hugging Face cache), or None."""
    if not isinstance(x, (str, Path)):
        return None
    p = Path(x).expanduser()
    if p.is_file() or p.is_dir():
        return p
    return huggingface.find(x)


def _request(name_or_config, weights):
    """(registry entry or None, chosen config or None, weights: None / "official" / path)."""
    if isinstance(name_or_config, DETRConfig):
        return None, name_or_config, weights
    if isinstance(name_or_config, str) and name_or_config in MODELS:
        entry = MODELS[name_or_config]
        return entry, entry.config, weights
    path = _model_path(name_or_config)
    if path is None:
        raise ValueError(f"unknown model {name_or_config!r}: use one of {sorted(MODELS)}, a DETRConfig, "
                         "the path of a checkpoint file or Hugging Face model folder, or a model id in the "
                         "local Hugging Face cache")
    if weights not in (None, "official"):
        raise ValueError("give the checkpoint either as name_or_config or as weights, not both")
    return None, None, path


def create_model(name_or_config="detr-r50-panoptic", weights=None, device=None, progress=None,
                 categories=None) -> DETRPanoptic:
    """Build the model in eval mode on the chosen device.

    name_or_config: a name of `MODELS`, a `DETRConfig`, or your own model: a checkpoint file (an
      official or training-script `.pth`), a Hugging Face DetrForSegmentation folder, or a model
      in the local Hugging Face cache (e.g. "facebook/detr-resnet-50-panoptic"); the architecture
      is then read from the file.
    weights: None (random initialisation), "official" (the registry's checkpoint: downloaded on
      first use into the torch hub cache, hash-checked; `DETR_VIZ_CHECKPOINT` can point to a local
      copy), or a path to a local `.pth` file.
    categories: a categories file (COCO panoptic JSON, or a config.json with id2label) for the
      class names, thing/stuff and colours; default: the file's own, else generic `class N` names.
    device: "cpu", "cuda" or "mps" or None (CUDA > MPS > CPU, or $DETR_VIZ_DEVICE).
    progress: optional callable(done_bytes, total_bytes) for a download progress bar.

    The model's `config`, `categories` (a CategoryTable) and `source` (what was read from where)
    describe the result. Raises `WeightsUnavailable` when weights cannot be had, with what to do.
    """
    entry, cfg, weights = _request(name_or_config, weights)
    if weights == "official":
        if entry is None:
            raise ValueError("weights='official' needs a model name from detr_viz.MODELS")
        weights = fetch(entry.name, progress=progress)
    loaded = None
    if weights is not None:
        path = _model_path(weights)
        if path is None:
            raise WeightsUnavailable(f"checkpoint file {weights} does not exist", path=Path(weights))
        loaded = read_model(path, base=cfg, categories=categories)
        cfg = loaded.config
    elif categories is not None:
        cats = Path(categories).expanduser().absolute()
        load_categories(cats, cfg.num_classes)
        cfg = cfg.replace(categories=str(cats))
    return _build(cfg, loaded, entry, device)


def _build(cfg: DETRConfig, loaded: LoadedModel | None, entry, device) -> DETRPanoptic:
    model = DETRPanoptic(cfg)
    source = loaded.source.get("path", "") if loaded else "random initialisation"
    if loaded is not None:
        _check_fits(model, loaded.state_dict, source)
        model.load_state_dict(loaded.state_dict, strict=True)
    model.eval().to(select_device(device))
    model.model_name = entry.name if entry else (loaded.source.get("name") or Path(source).stem
                                                 if loaded else "custom")
    model.weights_source = source
    model.source = dict(loaded.source) if loaded else {"format": "random initialisation"}
    model.categories = get_categories(cfg.categories, cfg.num_classes)
    return model


def _check_fits(model: DETRPanoptic, state: dict, source: str) -> None:
    """Raise WeightsUnavailable, naming what differs, if `state` does not load strictly."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if not (missing or unexpected or wrong):
        return
    cfg = model.config
    parts = [f"{len(v)} {what} (e.g. {v[0]})" for what, v in
             (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", wrong)) if v]
    raise WeightsUnavailable(
        f"The checkpoint {source} does not fit the model it was chosen for ({cfg.backbone}, "
        f"{cfg.num_queries} queries, {cfg.num_classes} classes): {'; '.join(parts)}. Choose the model "
        "that matches the file, or give the file itself as the model (its architecture is then read "
        "from the weights).", reason="checkpoint does not fit the model")


__all__ = ["create_model", "DEFAULT_MODEL", "OFFLINE_MODEL"]
