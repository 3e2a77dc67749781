"""Hugging Face `transformers` DetrForSegmentation files: a folder, or a model in the local HF cache.

A folder holds `config.json` and `model.safetensors` (or `pytorch_model.bin`). The local cache
(`$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`) keeps a model as
`models--<org>--<name>/snapshots/<commit>/...`, with `refs/main` naming the current commit; it is
found without any network call. The stored keys are mapped onto this app's (the official) ones:
separate q/k/v projections become `in_proj`, timm backbone names torchvision's, and so on.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import torch

from ..checkpoint import LoadedModel, read_torch_file, state_dict_of, to_float32
from ..config import DETRConfig
from ..errors import WeightsUnavailable

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")

# Stored prefix -> ours, first match wins (transformers 5 writes the first backbone form).
PREFIXES = (
    ("detr.model.backbone.conv_encoder.model.", "detr.backbone.0.body."),
    ("detr.model.backbone.model.", "detr.backbone.0.body."),
    ("detr.model.input_projection.", "detr.input_proj."),
    ("detr.model.query_position_embeddings.", "detr.query_embed."),
    ("detr.model.encoder.layers.", "detr.transformer.encoder.layers."),
    ("detr.model.decoder.layers.", "detr.transformer.decoder.layers."),
    ("detr.model.decoder.layernorm.", "detr.transformer.decoder.norm."),
    ("detr.class_labels_classifier.", "detr.class_embed."),
    ("detr.bbox_predictor.", "detr.bbox_embed."),
)
# Names inside one transformer layer.
ENCODER_PARTS = {"self_attn_layer_norm": "norm1", "final_layer_norm": "norm2", "fc1": "linear1", "fc2": "linear2"}
DECODER_PARTS = {"self_attn_layer_norm": "norm1", "encoder_attn_layer_norm": "norm2", "final_layer_norm": "norm3",
                 "encoder_attn": "multihead_attn", "fc1": "linear1", "fc2": "linear2"}
QKV = re.compile(r"^(.*)\.([qkv])_proj\.(weight|bias)$")


# ---- finding the files ---------------------------------------------------------------------------
def cache_roots() -> list[Path]:
    """The local Hugging Face hub caches, in huggingface_hub's order of precedence."""
    roots = []
    if os.environ.get("HF_HUB_CACHE"):
        roots.append(Path(os.environ["HF_HUB_CACHE"]))
    if os.environ.get("HF_HOME"):
        roots.append(Path(os.environ["HF_HOME"]) / "hub")
    xdg = os.environ.get("XDG_CACHE_HOME")
    roots.append((Path(xdg) if xdg else Path.home() / ".cache") / "huggingface" / "hub")
    return roots


def _snapshot(repo: Path) -> Path | None:
    """The snapshot folder of a cached `models--org--name` folder: refs/main's, else the newest."""
    ref = repo / "refs" / "main"
    if ref.is_file():
        snap = repo / "snapshots" / ref.read_text().strip()
        if (snap / "config.json").is_file():
            return snap
    snaps = [s for s in (repo / "snapshots").glob("*") if (s / "config.json").is_file()]
    return max(snaps, key=lambda s: s.stat().st_mtime) if snaps else None


def find(x) -> Path | None:
    """The Hugging Face model folder `x` names, or None: a folder with config.json, a weights file
    inside one, a cached `models--org--name` folder, or a model id ("org/name") in a local cache."""
    p = Path(x).expanduser()
    if p.is_file() and (p.name in WEIGHT_FILES or p.suffix == ".safetensors"):
        return p.parent if (p.parent / "config.json").is_file() else None
    if p.is_dir():
        if (p / "config.json").is_file():
            return p
        return _snapshot(p) if (p / "snapshots").is_dir() else None
    if isinstance(x, str) and re.fullmatch(r"[\w.-]+/[\w.-]+", x) and not p.exists():
        for root in cache_roots():
            repo = root / ("models--" + x.replace("/", "--"))
            if repo.is_dir() and (snap := _snapshot(repo)) is not None:
                return snap
    return None


# ---- config.json -------------------------------------------------------------------------------
def _backbone(cfg: dict, where: Path) -> str:
    """The timm backbone name, from either form of config.json: top-level `backbone` with
    `use_timm_backbone` (the hub's files), or nested `backbone_config` (what transformers 5 writes)."""
    nested = cfg.get("backbone_config") or {}
    name = cfg.get("backbone") if cfg.get("use_timm_backbone", True) else None
    name = name or nested.get("backbone")
    if not name:
        raise WeightsUnavailable(
            f"{where}/config.json names no timm backbone (no 'backbone' and no backbone_config.backbone); "
            "this app reads DetrForSegmentation models with a timm ResNet backbone.",
            reason="unsupported architecture", path=where)
    return name


def config_from_json(cfg: dict, num_classes: int, where: Path) -> DETRConfig:
    if cfg.get("position_embedding_type", "sine") != "sine":
        raise WeightsUnavailable(f"{where} uses position_embedding_type={cfg['position_embedding_type']!r}; "
                                 "this app implements the sine encoding only.", reason="unsupported architecture")
    if (cfg.get("encoder_attention_heads"), cfg.get("encoder_ffn_dim")) != \
            (cfg.get("decoder_attention_heads"), cfg.get("decoder_ffn_dim")):
        raise WeightsUnavailable(f"{where}: encoder and decoder differ in heads or FFN width; this app's "
                                 "transformer uses one size for both.", reason="unsupported architecture")
    try:
        return DETRConfig(
            backbone=_backbone(cfg, where), dilation=bool(cfg.get("dilation", False)), hidden_dim=cfg["d_model"],
            nheads=cfg["encoder_attention_heads"], enc_layers=cfg["encoder_layers"],
            dec_layers=cfg["decoder_layers"], dim_feedforward=cfg["encoder_ffn_dim"],
            num_queries=cfg["num_queries"], num_classes=num_classes)
    except (KeyError, ValueError, TypeError) as e:
        raise WeightsUnavailable(f"{where}/config.json does not describe a model this app can build: {e!r}",
                                 reason="unsupported architecture", path=where) from e


def _named_labels(cfg: dict) -> bool:
    """True if id2label holds real names (not transformers' LABEL_0, LABEL_1, ... placeholders)."""
    labels = cfg.get("id2label") or {}
    return bool(labels) and any(not re.fullmatch(r"LABEL_\d+", str(v)) for v in labels.values())


# ---- weights -----------------------------------------------------------------------------------
def _read_weights(folder: Path) -> dict:
    if (folder / "model.safetensors").is_file():
        from safetensors.torch import load_file
        try:
            sd = load_file(folder / "model.safetensors")
        except Exception as e:                           # noqa: BLE001 - any decoding failure
            raise WeightsUnavailable(f"{folder}/model.safetensors cannot be read (damaged or incomplete?): {e}",
                                     reason="not a checkpoint", path=folder) from e
        return {k: to_float32(v) for k, v in sd.items()}
    if (folder / "pytorch_model.bin").is_file():
        path = folder / "pytorch_model.bin"
        return state_dict_of(read_torch_file(path), path)
    raise WeightsUnavailable(f"{folder} has config.json but no {' or '.join(WEIGHT_FILES)}.",
                             reason="file missing", path=folder)


def map_key(key: str) -> str:
    """One stored key -> ours (q/k/v projections are joined separately, by `map_state_dict`)."""
    for old, new in PREFIXES:
        if key.startswith(old):
            key = new + key[len(old):]
            break
    m = re.match(r"^(detr\.transformer\.(encoder|decoder)\.layers\.\d+\.)([^.]+)(\..*)$", key)
    if m:
        parts = ENCODER_PARTS if m.group(2) == "encoder" else DECODER_PARTS
        key = m.group(1) + parts.get(m.group(3), m.group(3)) + m.group(4)
    return key


def map_state_dict(sd: dict) -> dict:
    """Stored keys -> ours; `{q,k,v}_proj.{weight,bias}` become `in_proj_{weight,bias}`, stacked
    q, k, v: (d, d) x 3 -> (3d, d). Box attention keeps its q_linear / k_linear."""
    out, qkv = {}, {}
    for key, value in sd.items():
        key = map_key(key)
        m = QKV.match(key)
        if m and ".transformer." in key:
            qkv.setdefault((m.group(1), m.group(3)), {})[m.group(2)] = value
        else:
            out[key] = value
    for (module, kind), parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            raise WeightsUnavailable(f"{module}: found only the {'/'.join(sorted(parts))} projections",
                                     reason="not a DETR checkpoint")
        out[f"{module}.in_proj_{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    return out


def read(folder: Path):
    """A LoadedModel from a Hugging Face DetrForSegmentation folder."""
    try:
        cfg = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise WeightsUnavailable(f"{folder}/config.json cannot be read: {e}", reason="not a checkpoint",
                                 path=folder) from e
    sd = map_state_dict(_read_weights(folder))
    cls = sd.get("detr.class_embed.weight")                  # (C + 1, d)
    if cls is None or not any(k.startswith("bbox_attention.") for k in sd):
        raise WeightsUnavailable(f"{folder} is not a DetrForSegmentation model (no class head or no mask head); "
                                 "detection-only DetrForObjectDetection models cannot make panoptic masks.",
                                 reason="detection-only checkpoint", path=folder)
    config = config_from_json(cfg, cls.shape[0] - 1, folder)
    config = config.replace(categories=str((folder / "config.json").absolute()) if _named_labels(cfg) else "generic")
    repo = next((p.name[len("models--"):].replace("--", "/") for p in folder.parents if p.name.startswith("models--")),
                None)
    return LoadedModel(sd, config, {"format": "Hugging Face DetrForSegmentation" + (" (local cache)" if repo else ""),
                                    "architecture": "config.json", "name": (repo or folder.name).split("/")[-1]})
