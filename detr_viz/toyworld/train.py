"""Training the toy-world DETR: data, Hungarian matching, DETR's losses and the training loop.

Library code; `scripts/train_toyworld.py` is the command line around `train()`.

Schedule ("detection first", as in the DETR paper): phase 1 trains the detector (backbone,
transformer, class and box heads) with class cross-entropy (down-weighted no-object), L1 and
GIoU box losses on every decoder layer (auxiliary losses). Phase 2 trains the box-attention maps
and the mask head with focal + dice losses on the queries matched to a ground-truth segment;
the detector is either frozen (`mask_phase="frozen"`, cheap: no backbone backward) or keeps
training with all losses (`mask_phase="joint"`).

Everything is deterministic by seed: training scene i is `generate_scene(train_seed0 + i)`, so a
run resumed from a checkpoint sees exactly the scenes it would have seen.
"""
from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import nn

from ..config import DETRConfig
from ..images import MEAN, STD
from ..segmentation import DETRPanoptic
from .categories import NUM_CLASSES, toyworld_categories
from .scenes import DEFAULT_SIZE, VAL_SEED0, generate_scene, validation_scenes



# ---- configuration ----------------------------------------------------------------------------

def toyworld_model_config(**kw) -> DETRConfig:
    """The architecture of the shipped toy-world model (keyword arguments override fields)."""
    base = dict(backbone="resnet18", dilation=True, hidden_dim=128, nheads=8, enc_layers=2, dec_layers=3,
                dim_feedforward=192, num_queries=16, num_classes=NUM_CLASSES, dropout=0.0, frozen_bn=True,
                bbox_attention_scale=8 * 10 * 10, categories="toyworld", threshold=0.7)
    base.update(kw)
    return DETRConfig(**base)


@dataclass
class TrainConfig:
    """Everything about a training run except the architecture."""
    size: int = DEFAULT_SIZE            # scenes are size x size
    batch_size: int = 8
    det_images: int = 100_000           # phase 1: detection only (at most; see det_minutes)
    mask_images: int = 100_000          # phase 2: masks (see mask_phase; at most)
    mask_phase: str = "frozen"          # "frozen": detector fixed; "joint": everything trains
    lr: float = 2e-4                    # AdamW, detector (and the mask head in phase 1: unused)
    mask_lr: float = 2e-3               # AdamW, box attention + mask head in phase 2
    weight_decay: float = 1e-4
    warmup_steps: int = 200             # linear warm-up of phase 1
    mask_warmup_steps: int = 20         # ... and of phase 2
    lr_drop_at: float = 0.8             # in each phase, lr x 0.1 after this fraction of its images
    clip: float = 0.1                   # gradient-norm clip
    w_class: float = 2.0                # loss weights (the matcher uses the same class/box weights)
    eos_coef: float = 0.1               # weight of the no-object class in the cross-entropy
    w_l1: float = 5.0
    w_giou: float = 2.0
    w_focal: float = 2.0
    w_dice: float = 1.0
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    aux_loss: bool = True
    seed: int = 0                       # torch init seed; training scenes are train_seed0 + i
    train_seed0: int = 0
    workers: int = 1                    # scene-generating processes
    threads: int = 2                    # torch threads
    log_every: int = 20                 # steps
    val_every_s: float = 300.0          # seconds between validation runs
    val_n: int = 60                     # validation scenes (seeds VAL_SEED0 + i)
    val_thresholds: tuple = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9)
    ckpt_every_s: float = 180.0
    det_minutes: float = 66.0           # if > 0, phase 1 also ends after this many minutes
    mask_minutes: float = 18.0          # if > 0, phase 2 also ends after this many minutes

    @property
    def total_images(self) -> int:
        return self.det_images + self.mask_images

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        out = cls(**{k: v for k, v in d.items() if k in known})
        out.val_thresholds = tuple(out.val_thresholds)
        return out


# ---- data -------------------------------------------------------------------------------------

def image_tensor(image) -> torch.Tensor:
    """PIL RGB -> (3, H, W) float, ImageNet-normalised (as the app's preprocessing)."""
    x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)   # (3, H, W)
    mean = torch.tensor(MEAN).view(3, 1, 1)
    std = torch.tensor(STD).view(3, 1, 1)
    return (x - mean) / std


def scene_targets(scene) -> dict:
    """Training targets of one scene: labels (K,), boxes (K, 4) cxcywh in [0, 1], masks
    (K, H/4, W/4) = the fraction of each 4x4 cell the segment covers (soft targets)."""
    H, W = scene.id_map.shape
    labels = torch.tensor([s["category_id"] for s in scene.segments], dtype=torch.long)   # (K,)
    boxes = torch.tensor([[(x + w / 2) / W, (y + h / 2) / H, w / W, h / H]
                          for x, y, w, h in (s["bbox"] for s in scene.segments)], dtype=torch.float32)
    ids = np.array([s["id"] for s in scene.segments])
    onehot = (scene.id_map[None] == ids[:, None, None]).astype(np.float32)            # (K, H, W)
    masks = onehot.reshape(len(ids), H // 4, 4, W // 4, 4).mean(axis=(2, 4))           # (K, H/4, W/4)
    return {"labels": labels, "boxes": boxes, "masks": torch.from_numpy(masks)}


class SceneDataset(torch.utils.data.Dataset):
    """Item i = (image (3, S, S), targets) of scene `seed0 + i`."""

    def __init__(self, seed0: int, length: int, size: int):
        if seed0 + length > VAL_SEED0:
            raise ValueError("training seeds must stay below VAL_SEED0 (validation / test seeds)")
        self.seed0, self.length, self.size = seed0, length, size

    def __len__(self):
        return self.length

    def __getitem__(self, i):
        scene = generate_scene(self.seed0 + i, self.size)
        return image_tensor(scene.image), scene_targets(scene)


def _collate(batch):
    return torch.stack([b[0] for b in batch]), [b[1] for b in batch]


def _worker_init(_):
    torch.set_num_threads(1)


def batches(tc: TrainConfig, start_image: int):
    """Training batches from image `start_image` on (scene generation in worker processes)."""
    n = tc.total_images - start_image
    ds = SceneDataset(tc.train_seed0 + start_image, max(n, 0), tc.size)
    return torch.utils.data.DataLoader(ds, batch_size=tc.batch_size, shuffle=False, num_workers=tc.workers,
                                       collate_fn=_collate, worker_init_fn=_worker_init,
                                       prefetch_factor=4 if tc.workers else None, drop_last=True)


# ---- boxes ------------------------------------------------------------------------------------

def box_xyxy(b: torch.Tensor) -> torch.Tensor:
    """(..., 4) cxcywh -> (..., 4) x0y0x1y1."""
    cx, cy, w, h = b.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def generalized_box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """GIoU of every pair: a (n, 4), b (m, 4) in xyxy -> (n, m)."""
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)   # (n,)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)   # (m,)
    lt = torch.max(a[:, None, :2], b[None, :, :2])          # (n, m, 2)
    rb = torch.min(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)                 # (n, m)
    union = area_a[:, None] + area_b[None] - inter
    iou = inter / union.clamp(min=1e-7)
    lt_c = torch.min(a[:, None, :2], b[None, :, :2])        # enclosing box
    rb_c = torch.max(a[:, None, 2:], b[None, :, 2:])
    hull = (rb_c - lt_c).clamp(min=0).prod(-1)              # (n, m)
    return iou - (hull - union) / hull.clamp(min=1e-7)


# ---- matching and losses ----------------------------------------------------------------------

@torch.no_grad()
def hungarian_match(logits, boxes, target, tc: TrainConfig):
    """Optimal one-to-one assignment of queries to targets for one image.

    logits (N, C+1), boxes (N, 4) cxcywh; target: labels (K,), boxes (K, 4).
    Cost = -w_class * p(target class) + w_l1 * L1 - w_giou * GIoU. Returns (query idx, target idx).
    """
    labels, tboxes = target["labels"], target["boxes"]
    if len(labels) == 0:
        empty = torch.zeros(0, dtype=torch.long)
        return empty, empty
    prob = logits.float().softmax(-1)[:, labels]           # (N, K)
    l1 = torch.cdist(boxes.float(), tboxes, p=1)            # (N, K)
    giou = generalized_box_iou(box_xyxy(boxes.float()), box_xyxy(tboxes))   # (N, K)
    cost = -tc.w_class * prob + tc.w_l1 * l1 - tc.w_giou * giou
    q, t = linear_sum_assignment(cost.numpy())
    return torch.as_tensor(q, dtype=torch.long), torch.as_tensor(t, dtype=torch.long)


def detection_losses(logits, boxes, targets, matches, num_boxes: float, tc: TrainConfig) -> dict:
    """One decoder layer. logits (B, N, C+1), boxes (B, N, 4); matches: [(q, t)] per image."""
    B, N, C1 = logits.shape
    target_classes = torch.full((B, N), C1 - 1, dtype=torch.long)   # no-object everywhere ...
    for b, (q, t) in enumerate(matches):
        target_classes[b, q] = targets[b]["labels"][t]               # ... except matched queries
    weight = torch.ones(C1)
    weight[-1] = tc.eos_coef
    ce = F.cross_entropy(logits.flatten(0, 1), target_classes.flatten(), weight=weight)

    pred = torch.cat([boxes[b, q] for b, (q, _) in enumerate(matches)])             # (T, 4)
    tgt = torch.cat([targets[b]["boxes"][t] for b, (_, t) in enumerate(matches)])   # (T, 4)
    l1 = (pred - tgt).abs().sum() / num_boxes
    giou = (1 - torch.diag(generalized_box_iou(box_xyxy(pred), box_xyxy(tgt)))).sum() / num_boxes
    return {"ce": ce, "l1": l1, "giou": giou}


def mask_losses(pred, tgt, num_boxes: float, tc: TrainConfig) -> dict:
    """pred: (T, h, w) mask logits of the matched queries; tgt: (T, h, w) soft targets in [0, 1]."""
    pred, tgt = pred.flatten(1), tgt.flatten(1)             # (T, h*w)
    p = pred.sigmoid()
    ce = F.binary_cross_entropy_with_logits(pred, tgt, reduction="none")
    p_t = p * tgt + (1 - p) * (1 - tgt)
    alpha_t = tc.focal_alpha * tgt + (1 - tc.focal_alpha) * (1 - tgt)
    focal = (alpha_t * ce * (1 - p_t) ** tc.focal_gamma).mean(1).sum() / num_boxes
    dice = 1 - (2 * (p * tgt).sum(1) + 1) / (p.sum(1) + tgt.sum(1) + 1)
    return {"focal": focal, "dice": dice.sum() / num_boxes}


def matched_mask_logits(model: DETRPanoptic, det, matches) -> torch.Tensor:
    """Mask logits of the matched queries only, image by image: (T, H/4, W/4).

    GroupNorm normalises each sample on its own, so this equals the full-batch computation."""
    res2, res3, res4, _ = det.features
    out = []
    for b, (q, _) in enumerate(matches):
        hs = det.hs[-1][b:b + 1, q]                         # (1, K, d)
        bbox_mask = model.bbox_attention(hs, det.memory[b:b + 1], mask=det.mask[b:b + 1])   # (1, K, M, h, w)
        seg = model.mask_head(det.src_proj[b:b + 1], bbox_mask,
                              [res4[b:b + 1], res3[b:b + 1], res2[b:b + 1]])   # (K, 1, H/4, W/4)
        out.append(seg[:, 0])
    return torch.cat(out)


def compute_losses(model, det, targets, tc: TrainConfig, with_det: bool, with_mask: bool):
    """Weighted total loss and its parts (floats) for one batch."""
    num_boxes = float(max(sum(len(t["labels"]) for t in targets), 1))
    L = det.class_logits.shape[0]
    layers = range(L) if (tc.aux_loss and with_det) else [L - 1]
    parts, total, last_matches = {}, 0.0, None
    for layer in layers:
        logits, boxes = det.class_logits[layer], det.boxes[layer]   # (B, N, C+1), (B, N, 4)
        matches = [hungarian_match(logits[b].detach(), boxes[b].detach(), t, tc) for b, t in enumerate(targets)]
        if layer == L - 1:
            last_matches = matches
        if with_det:
            d = detection_losses(logits, boxes, targets, matches, num_boxes, tc)
            total = total + tc.w_class * d["ce"] + tc.w_l1 * d["l1"] + tc.w_giou * d["giou"]
            suffix = "" if layer == L - 1 else f"_{layer}"
            parts.update({k + suffix: float(v.detach()) for k, v in d.items()})
    if with_mask:
        pred = matched_mask_logits(model, det, last_matches)                             # (T, h, w)
        tgt = torch.cat([t["masks"][ti] for t, (_, ti) in zip(targets, last_matches)])   # (T, h, w)
        m = mask_losses(pred, tgt, num_boxes, tc)
        total = total + tc.w_focal * m["focal"] + tc.w_dice * m["dice"]
        parts.update({k: float(v.detach()) for k, v in m.items()})
    parts["loss"] = float(total.detach()) if torch.is_tensor(total) else float(total)
    parts["cls_acc"] = _class_accuracy(det.class_logits[-1], targets, last_matches)
    return total, parts


def _class_accuracy(logits, targets, matches) -> float:
    """Fraction of matched queries whose argmax is their target's class."""
    hits, n = 0, 0
    for b, (q, t) in enumerate(matches):
        hits += int((logits[b, q].argmax(-1) == targets[b]["labels"][t]).sum())
        n += len(q)
    return hits / max(n, 1)


# ---- model ------------------------------------------------------------------------------------

def build_train_model(cfg: DETRConfig, seed: int) -> DETRPanoptic:
    """The model with trainable BatchNorm, backbone in channels_last (much faster on CPU)."""
    torch.manual_seed(seed)
    model = DETRPanoptic(cfg.replace(frozen_bn=False))
    model.detr.backbone.to(memory_format=torch.channels_last)
    return model


def detector_parameters(model):
    return [p for n, p in model.named_parameters() if n.startswith("detr.")]


def mask_parameters(model):
    return [p for n, p in model.named_parameters() if not n.startswith("detr.")]


def export_state_dict(model: nn.Module) -> dict:
    """float16 copy of the weights in the layout of a `frozen_bn=True` model."""
    sd = {}
    for k, v in model.state_dict().items():
        if k.endswith("num_batches_tracked"):
            continue
        v = v.detach().cpu().contiguous()
        sd[k] = v.half() if v.is_floating_point() else v
    return sd


def save_release(model, cfg: DETRConfig, path, meta: dict) -> None:
    """The shipped file: {"model": float16 state dict, "config": dict, "meta": dict}. The config
    carries the training resize (shorter side = the scene size; longer side capped at 3x that, so a
    panorama cannot blow up the encoder), so `trace()` feeds the model images at the scale it was
    trained on."""
    size = int(meta.get("input_size", cfg.input_size))
    cfg_dict = cfg.replace(frozen_bn=True, input_size=size, max_input_size=3 * size).to_dict()
    torch.save({"model": export_state_dict(model), "config": cfg_dict, "meta": meta}, path)


def load_release(path) -> DETRPanoptic:
    """Inverse of `save_release` (eval mode, FrozenBatchNorm2d, float32)."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    model = DETRPanoptic(DETRConfig.from_dict(ckpt["config"]))
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in ckpt["model"].items()})
    return model.eval()


# ---- evaluation -------------------------------------------------------------------------------

@torch.no_grad()
def predict_outputs(model, scenes, batch_size: int = 8):
    """Model outputs per scene (dicts with batch dimension 1), in eval mode."""
    was_training = model.training
    model.eval()
    outs = []
    for i in range(0, len(scenes), batch_size):
        x = torch.stack([image_tensor(s.image) for s in scenes[i:i + batch_size]])
        x = x.contiguous(memory_format=torch.channels_last)
        o = model(x)
        for b in range(x.shape[0]):
            outs.append({k: v[b:b + 1] for k, v in o.items()})
    model.train(was_training)
    return outs


def panoptic_eval(outputs, scenes, thresholds) -> dict:
    """PQ summary per merge threshold: {threshold: summary (see metrics.PQAccumulator)}."""
    from ..metrics import PQAccumulator
    from ..postprocess import postprocess_panoptic
    cats = toyworld_categories()
    isthing = {c.id: c.isthing for c in cats.used()}
    result = {}
    for thr in thresholds:
        acc = PQAccumulator()
        for out, scene in zip(outputs, scenes):
            size = scene.id_map.shape
            res = postprocess_panoptic(out, size, threshold=thr, categories=cats)
            acc.add(scene.id_map, scene.segments, res.id_map, res.segments)
        result[float(thr)] = acc.summary(isthing)
    return result


# ---- training loop ----------------------------------------------------------------------------

def _lr_factor(step_in_phase: int, progress: float, warmup: int, tc: TrainConfig) -> float:
    """Linear warm-up over the first steps of a phase, x 0.1 once the phase is lr_drop_at done."""
    warm = min(1.0, (step_in_phase + 1) / max(warmup, 1))
    return warm * (0.1 if progress >= tc.lr_drop_at else 1.0)


def _progress(state: dict, tc: TrainConfig) -> float:
    """Fraction of the current phase done: by images, or by minutes if that limit comes first."""
    det = state["phase"] == "det"
    steps = (tc.det_images if det else tc.mask_images) // tc.batch_size
    minutes = tc.det_minutes if det else tc.mask_minutes
    p = (state["step"] - state["phase_start_step"]) / max(steps, 1)
    if minutes > 0:
        p = max(p, (state["elapsed_s"] - state["phase_start_s"]) / (60 * minutes))
    return p


def _make_optimizer(model, tc: TrainConfig, phase: str):
    """AdamW; each group keeps its base lr under "base_lr". Frozen mask phase: mask params only."""
    groups = [{"params": mask_parameters(model), "base_lr": tc.mask_lr if phase == "mask" else tc.lr}]
    if not (phase == "mask" and tc.mask_phase == "frozen"):
        groups.append({"params": detector_parameters(model), "base_lr": tc.lr})
    for g in groups:
        g["lr"] = g["base_lr"]
    return torch.optim.AdamW(groups, lr=tc.lr, weight_decay=tc.weight_decay)


def _set_mode(model, phase: str, tc: TrainConfig) -> None:
    """Train mode; with a frozen detector its BatchNorm uses (and keeps) the running statistics."""
    model.train()
    frozen = phase == "mask" and tc.mask_phase == "frozen"
    for p in detector_parameters(model):
        p.requires_grad_(not frozen)
    if frozen:
        model.detr.eval()


class Logger:
    """Prints progress lines and appends JSON records to a log file."""

    def __init__(self, path):
        self.path = Path(path) if path else None

    def record(self, rec: dict) -> None:
        if self.path:
            with open(self.path, "a") as f:
                f.write(json.dumps(rec) + "\n")

    def print(self, msg: str) -> None:
        print(msg, flush=True)


def machine_description() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}"


def train(cfg: DETRConfig, tc: TrainConfig, out_dir, resume: bool = True, release_path=None,
          stop_after_steps: int | None = None) -> DETRPanoptic:
    """Run (or resume) a training run in `out_dir` (checkpoint.pt, log.jsonl, final model)."""
    torch.set_num_threads(tc.threads)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = out_dir / "checkpoint.pt"
    log = Logger(out_dir / "log.jsonl")
    model = build_train_model(cfg, tc.seed)
    state = {"images": 0, "step": 0, "elapsed_s": 0.0, "phase": "det" if tc.det_images else "mask",
             "phase_start_step": 0, "phase_start_s": 0.0}
    ckpt = None
    if resume and ckpt_path.is_file():
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        model.load_state_dict(ckpt["model"])
        state = ckpt["state"]
        log.print(f"resumed from {ckpt_path} at image {state['images']} ({state['elapsed_s'] / 60:.1f} min)")
    else:
        log.record({"type": "start", "model_config": cfg.to_dict(), "train_config": asdict(tc),
                    "machine": machine_description()})
    val = validation_scenes(tc.val_n, tc.size) if tc.val_n else []

    phase, opt = None, None
    t_last_val = t_last_ckpt = time.time()
    t0 = time.time() - state["elapsed_s"]
    window: dict = {}
    t_window, n_window = time.time(), 0
    for images, targets in batches(tc, state["images"]):
        if state["phase"] != phase:                    # start (or resume) a phase
            phase = state["phase"]
            opt = _make_optimizer(model, tc, phase)
            if ckpt is not None and ckpt.get("phase") == phase:
                opt.load_state_dict(ckpt["optimizer"])
            ckpt = None
            _set_mode(model, phase, tc)
            log.print(f"phase {phase} from image {state['images']}: "
                      f"{'detection only' if phase == 'det' else 'masks, detector ' + tc.mask_phase}")
            log.record({"type": "phase", "phase": phase, "step": state["step"], "images": state["images"],
                        "minutes": state["elapsed_s"] / 60})
        progress = _progress(state, tc)
        warmup = tc.warmup_steps if phase == "det" else tc.mask_warmup_steps
        factor = _lr_factor(state["step"] - state["phase_start_step"], progress, warmup, tc)
        if progress >= tc.lr_drop_at and not state.get(f"lr_drop_{phase}"):
            state[f"lr_drop_{phase}"] = state["images"]   # recorded: a time-limited run can be replayed
            log.record({"type": "lr_drop", "phase": phase, "step": state["step"], "images": state["images"]})
        for g in opt.param_groups:
            g["lr"] = g["base_lr"] * factor

        images = images.contiguous(memory_format=torch.channels_last)   # (B, 3, S, S)
        frozen = phase == "mask" and tc.mask_phase == "frozen"
        with torch.set_grad_enabled(not frozen):
            det = model.detect(images)
        loss, parts = compute_losses(model, det, targets, tc, with_det=not frozen,
                                     with_mask=phase == "mask")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if tc.clip > 0:
            torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], tc.clip)
        opt.step()

        state["step"] += 1
        state["images"] += images.shape[0]
        state["elapsed_s"] = time.time() - t0
        n_window += images.shape[0]
        for k, v in parts.items():
            window[k] = window.get(k, 0.0) + v
        if state["step"] % tc.log_every == 0:
            _log_window(log, state, phase, window, tc, n_window / (time.time() - t_window), opt)
            window, t_window, n_window = {}, time.time(), 0
        phase_done = _progress(state, tc) >= 1.0
        last = phase_done and phase == "mask"
        stop = stop_after_steps is not None and state["step"] >= stop_after_steps
        if val and (time.time() - t_last_val > tc.val_every_s or phase_done):
            _validate(model, val, tc, state, log, phase)
            t_last_val = time.time()
        if phase_done and not last:                    # detection done: masks next
            state.update(phase="mask", phase_start_step=state["step"], phase_start_s=state["elapsed_s"],
                         det_images_done=state["images"])
        if time.time() - t_last_ckpt > tc.ckpt_every_s or phase_done or stop:
            _save_checkpoint(ckpt_path, model, opt, state, phase)
            t_last_ckpt = time.time()
        if last or stop:
            break
    model.eval()
    if release_path is not None:
        meta = {"images_seen": state["images"], "train_minutes": round(state["elapsed_s"] / 60, 1),
                "det_phase_images": state.get("det_images_done", 0),
                "machine": machine_description(), "input_size": tc.size,
                "normalize_mean": list(MEAN), "normalize_std": list(STD),
                "train_config": json.dumps(asdict(tc))}
        save_release(model, cfg, release_path, meta)
    return model


def _log_window(log, state, phase, window, tc, img_per_s, opt):
    n = tc.log_every
    avg = {k: v / n for k, v in window.items()}
    rec = {"type": "train", "step": state["step"], "images": state["images"], "phase": phase,
           "minutes": state["elapsed_s"] / 60, "img_per_s": img_per_s, "lr": opt.param_groups[-1]["lr"], **avg}
    log.record(rec)
    left = (1 - min(_progress(state, tc), 1)) * _phase_len(state, tc) / max(img_per_s, 1e-6) / 60
    minutes = tc.det_minutes if state["phase"] == "det" else tc.mask_minutes
    if minutes > 0:
        left = min(left, minutes - (state["elapsed_s"] - state["phase_start_s"]) / 60)
    main = " ".join(f"{k} {avg[k]:.3f}" for k in ("loss", "ce", "l1", "giou", "focal", "dice", "cls_acc") if k in avg)
    log.print(f"[{phase}] step {state['step']} img {state['images']} "
              f"{state['elapsed_s'] / 60:.1f} min {img_per_s:.1f} img/s (~{left:.0f} min left in phase) | {main}")


def _phase_len(state, tc) -> int:
    return tc.det_images if state["phase"] == "det" else tc.mask_images


def _validate(model, val, tc, state, log, phase):
    t = time.time()
    outs = predict_outputs(model, val)
    res = panoptic_eval(outs, val, tc.val_thresholds) if phase == "mask" else None
    rec = {"type": "val", "step": state["step"], "images": state["images"], "minutes": state["elapsed_s"] / 60,
           "phase": phase}
    if res is not None:
        rec["pq"] = {str(k): {g: v[g] for g in ("all", "things", "stuff")} for k, v in res.items()}
        best = max(res, key=lambda k: res[k]["all"]["pq"])
        msg = " ".join(f"{k:g}:{v['all']['pq']:.1f}" for k, v in res.items())
        log.print(f"  val PQ by threshold {msg} | best {best:g}: things {res[best]['things']['pq']:.1f} "
                  f"stuff {res[best]['stuff']['pq']:.1f} ({time.time() - t:.0f}s)")
    rec.update(_detection_stats(outs, val))
    log.record(rec)
    log.print("  val detection: " + " ".join(f"{k} {v:.3f}" for k, v in rec.items()
                                                if k.startswith("det_")))


def _detection_stats(outputs, scenes, thr: float = 0.7) -> dict:
    """Cheap detection numbers: kept queries per GT segment and how many GT classes are found."""
    kept, found, gt = 0, 0, 0
    for out, scene in zip(outputs, scenes):
        prob = out["pred_logits"][0].softmax(-1)            # (N, C+1)
        score, label = prob.max(-1)
        keep = (label != prob.shape[-1] - 1) & (score > thr)
        kept += int(keep.sum())
        pred_labels = label[keep].tolist()
        for s in scene.segments:
            gt += 1
            if s["category_id"] in pred_labels:
                pred_labels.remove(s["category_id"])
                found += 1
    return {"det_kept_per_gt": kept / max(gt, 1), "det_recall_cls": found / max(gt, 1)}


def _save_checkpoint(path, model, opt, state, phase):
    tmp = Path(str(path) + ".tmp")
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "state": dict(state),
                "phase": phase}, tmp)
    os.replace(tmp, path)
