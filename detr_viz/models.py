"""`create_model`: build a DETR panoptic model by registry name or config, with or without weights."""
from __future__ import annotations

from pathlib import Path

from .checkpoint import infer_config, load_checkpoint
from .config import DETRConfig
from .device import select_device
from .errors import WeightsUnavailable
from .registry import MODELS, fetch
from .segmentation import DETRPanoptic

DEFAULT_MODEL = "detr-r50-panoptic"
OFFLINE_MODEL = "toyworld"


def create_model(name_or_config="detr-r50-panoptic", weights=None, device=None, progress=None,
                 categories=None) -> DETRPanoptic:
    """Build the model in eval mode on the chosen device.

    name_or_config: a name of `MODELS`, a `DETRConfig`, or a path to a checkpoint file.
    weights: None (random initialisation), "official" (the registry's checkpoint: downloaded on
      first use into the torch hub cache, hash-checked; `DETR_VIZ_CHECKPOINT` can point to a local
      copy), or a path to a local `.pth` file.
    device: "cpu", "cuda", "mps" or None (CUDA > MPS > CPU, or $DETR_VIZ_DEVICE).
    progress: optional callable(done_bytes, total_bytes) for a download progress bar.
    Raises `WeightsUnavailable` when weights cannot be had, with what to do about it.
    """
    entry, cfg = None, None
    if isinstance(name_or_config, DETRConfig):
        cfg = name_or_config
    elif isinstance(name_or_config, str) and name_or_config in MODELS:
        entry = MODELS[name_or_config]
        cfg = entry.config
    elif isinstance(name_or_config, (str, Path)) and Path(name_or_config).expanduser().is_file():
        if weights not in (None, "official"):
            raise ValueError("give the checkpoint either as name_or_config or as weights, not both")
        weights = Path(name_or_config).expanduser()
    else:
        raise ValueError(f"unknown model {name_or_config!r}: use one of {sorted(MODELS)}, "
                         "a DETRConfig, or the path of a checkpoint file")

    state, source = None, "random initialisation"
    if weights == "official":
        if entry is None:
            raise ValueError("weights='official' needs a model name from detr_viz.MODELS")
        path = fetch(entry.name, progress=progress)
        state, cfg_dict = load_checkpoint(path)
        source = str(path)
    elif weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsUnavailable(f"checkpoint file {path} does not exist")
        state, cfg_dict = load_checkpoint(path)
        source = str(path)
    if state is not None:
        if cfg_dict:
            cfg = DETRConfig.from_dict(cfg_dict)
        elif cfg is None:
            cfg = infer_config(state, Path(source).name)

    model = DETRPanoptic(cfg)
    if state is not None:
        _check_fits(model, state, source)
        model.load_state_dict(state, strict=True)
    model.eval().to(select_device(device))
    model.model_name = entry.name if entry else (Path(source).stem if state is not None else "custom")
    model.weights_source = source
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
