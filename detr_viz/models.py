"""`create_model`: build a DETR panoptic model by registry name or config, with or without weights."""
from __future__ import annotations

from pathlib import Path

from .config import DETRConfig
from .device import select_device
from .segmentation import DETRPanoptic
from .weights import MODELS, WeightsUnavailable, fetch, infer_config, load_checkpoint

DEFAULT_MODEL = "detr-r50-panoptic"
OFFLINE_MODEL = "toyworld"


def create_model(name_or_config="detr-r50-panoptic", weights=None, device=None, progress=None) -> DETRPanoptic:
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
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise WeightsUnavailable(
                f"the checkpoint {source} does not fit the {cfg.backbone} config "
                f"(dilation={cfg.dilation}, {cfg.num_queries} queries): {str(e).splitlines()[0]}") from e
    model.eval().to(select_device(device))
    model.model_name = entry.name if entry else (Path(source).stem if state is not None else "custom")
    model.weights_source = source
    return model


def model_summary(model: DETRPanoptic) -> dict:
    """Name, weights source, parameter count and config of a built model, for a status line."""
    n_params = sum(p.numel() for p in model.parameters())
    return {"name": getattr(model, "model_name", "custom"), "weights": getattr(model, "weights_source", "?"),
            "parameters": n_params, "device": str(next(model.parameters()).device),
            "config": model.config.to_dict()}


def trained_weights_available(name: str) -> bool:
    """True if the model's trained weights are on disk here (no download needed)."""
    try:
        return MODELS[name].available_offline()
    except (KeyError, AttributeError):
        return False


__all__ = ["create_model", "model_summary", "DEFAULT_MODEL", "OFFLINE_MODEL", "trained_weights_available"]
