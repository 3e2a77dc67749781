"""Model files of your own: what `create_model(PATH)` can read, and what it read.

- a `.pth` checkpoint: an official hub file (bare weights), a file of this app (weights + its
  config dict), or a checkpoint of the official training script (`formats.training`);
- a Hugging Face `DetrForSegmentation` folder, or such a model in the local Hugging Face cache
  (`formats.huggingface`).

`read_model` returns a `LoadedModel`: float32 weights in this app's (the official) key layout, the
config, and `source`, a dict saying what was read from where (shown by the app and the CLI).
"""
from __future__ import annotations

from pathlib import Path

from ..categories import GENERIC, load_categories
from ..checkpoint import LoadedModel, infer_config, read_torch_file, state_dict_of
from ..config import DETRConfig
from . import huggingface, training


def _read_torch(path: Path, base: DETRConfig | None) -> LoadedModel:
    ckpt = read_torch_file(path)
    sd = state_dict_of(ckpt, path)                   # optimizer / scheduler state dropped
    what = str(path)
    if isinstance(ckpt.get("config"), dict):         # a file of this app (toy world, tests)
        cfg = DETRConfig.from_dict(ckpt["config"])
        return LoadedModel(sd, cfg, {"format": "detr-viz checkpoint", "architecture": "the file's config"})
    if training.is_training_checkpoint(ckpt):
        cfg, fields = training.config_from_args(ckpt["args"], sd, what, base)
        cfg = cfg.replace(categories=training.default_categories(ckpt["args"], cfg.num_classes))
        arch = f"args ({', '.join(fields)}); num_classes from the weights" if fields else "the weights"
        return LoadedModel(sd, cfg, {"format": f"official training checkpoint (epoch {ckpt.get('epoch', '?')})",
                                     "architecture": arch})
    if base is not None:
        return LoadedModel(sd, base, {"format": "state dict", "architecture": "the chosen model"})
    cfg = infer_config(sd, path.name)
    cfg = cfg.replace(categories="coco" if cfg.num_classes == 250 else GENERIC)
    return LoadedModel(sd, cfg, {"format": "state dict (official layout)", "architecture": "the weights"})


def read_model(path, base: DETRConfig | None = None, categories=None) -> LoadedModel:
    """Read any supported model file or folder. `base`: the architecture the caller chose (used
    for bare state dicts; a file's own config wins). `categories`: a categories file that
    overrides the file's own table."""
    hf = huggingface.find(path)
    if hf is not None:
        loaded = huggingface.read(hf)
    else:
        loaded = _read_torch(Path(path).expanduser(), base)
    loaded.source["path"] = str(hf or Path(path).expanduser())
    if categories is not None:
        cats = Path(categories).expanduser().absolute()
        load_categories(cats, loaded.config.num_classes)      # a malformed file fails here, clearly
        loaded.config = loaded.config.replace(categories=str(cats))
    loaded.source["categories"] = loaded.config.categories
    return loaded


__all__ = ["LoadedModel", "read_model"]
