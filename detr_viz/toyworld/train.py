"""Training the toy-world DETR: the training loop (as DETR's engine + main).

Library code; `scripts/train_toyworld.py` is the command line around `train()`. The parts live
along DETR's own lines: box ops in `detr_viz.boxes`, the matcher in `matcher`, the losses in
`criterion`, data in `data`, evaluation in `evaluate`, the shipped file in `release`, the
configuration in `config`.

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
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch

from ..config import DETRConfig
from ..images import MEAN, STD
from ..segmentation import DETRPanoptic
from .config import TrainConfig
from .criterion import compute_losses
from .data import batches
from .evaluate import detection_stats, panoptic_eval, predict_outputs
from .release import save_release
from .scenes import validation_scenes


@dataclass
class RunState:
    """Where a training run stands; saved in checkpoint.pt (as a dict) so that a run resumes exactly."""
    images: int = 0                     # training images seen
    step: int = 0
    elapsed_s: float = 0.0              # training time, over all sessions of the run
    phase: str = "det"                  # "det" (detection only) or "mask"
    phase_start_step: int = 0
    phase_start_s: float = 0.0
    det_images_done: int = 0            # images seen when the detection phase ended
    lr_drop_det: int | None = None      # images seen at each phase's lr drop (a time-limited run
    lr_drop_mask: int | None = None     # can be replayed)

    @classmethod
    def start(cls, tc: TrainConfig) -> RunState:
        return cls(phase="det" if tc.det_images else "mask")

    @classmethod
    def from_dict(cls, d: dict) -> RunState:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def phase_step(self) -> int:
        return self.step - self.phase_start_step

    @property
    def phase_elapsed_s(self) -> float:
        return self.elapsed_s - self.phase_start_s

    def phase_limits(self, tc: TrainConfig) -> tuple[int, float]:
        """(images, minutes) the current phase may last (minutes <= 0: no time limit)."""
        if self.phase == "det":
            return tc.det_images, tc.det_minutes
        return tc.mask_images, tc.mask_minutes

    def progress(self, tc: TrainConfig) -> float:
        """Fraction of the current phase done: by images, or by minutes if that limit comes first."""
        images, minutes = self.phase_limits(tc)
        p = self.phase_step / max(images // tc.batch_size, 1)
        if minutes > 0:
            p = max(p, self.phase_elapsed_s / (60 * minutes))
        return p

    def lr_dropped(self) -> bool:
        return (self.lr_drop_det if self.phase == "det" else self.lr_drop_mask) is not None

    def mark_lr_drop(self) -> None:
        if self.phase == "det":
            self.lr_drop_det = self.images
        else:
            self.lr_drop_mask = self.images

    def start_mask_phase(self) -> None:
        self.phase, self.phase_start_step, self.phase_start_s = "mask", self.step, self.elapsed_s
        self.det_images_done = self.images


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


def _frozen_detector(phase: str, tc: TrainConfig) -> bool:
    return phase == "mask" and tc.mask_phase == "frozen"


def _make_optimizer(model, tc: TrainConfig, phase: str):
    """AdamW; each group keeps its base lr under "base_lr". Frozen mask phase: mask params only."""
    groups = [{"params": mask_parameters(model), "base_lr": tc.mask_lr if phase == "mask" else tc.lr}]
    if not _frozen_detector(phase, tc):
        groups.append({"params": detector_parameters(model), "base_lr": tc.lr})
    for g in groups:
        g["lr"] = g["base_lr"]
    return torch.optim.AdamW(groups, lr=tc.lr, weight_decay=tc.weight_decay)


def _set_mode(model, phase: str, tc: TrainConfig) -> None:
    """Train mode; with a frozen detector its BatchNorm uses (and keeps) the running statistics."""
    model.train()
    frozen = _frozen_detector(phase, tc)
    for p in detector_parameters(model):
        p.requires_grad_(not frozen)
    if frozen:
        model.detr.eval()


def _lr_factor(step_in_phase: int, progress: float, warmup: int, tc: TrainConfig) -> float:
    """Linear warm-up over the first steps of a phase, x 0.1 once the phase is lr_drop_at done."""
    warm = min(1.0, (step_in_phase + 1) / max(warmup, 1))
    return warm * (0.1 if progress >= tc.lr_drop_at else 1.0)


# ---- logging ----------------------------------------------------------------------------------

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


@dataclass
class _Window:
    """Loss sums and image count since the last log line."""
    sums: dict = field(default_factory=dict)
    images: int = 0
    t0: float = field(default_factory=time.time)

    def add(self, parts: dict, images: int) -> None:
        self.images += images
        for k, v in parts.items():
            self.sums[k] = self.sums.get(k, 0.0) + v

    def img_per_s(self) -> float:
        return self.images / (time.time() - self.t0)


# ---- the run ----------------------------------------------------------------------------------

class _Run:
    """One training run in `out_dir`: model, state, optimizer, log and timers."""

    def __init__(self, cfg: DETRConfig, tc: TrainConfig, out_dir: Path, resume: bool):
        self.cfg, self.tc = cfg, tc
        out_dir.mkdir(parents=True, exist_ok=True)
        self.ckpt_path = out_dir / "checkpoint.pt"
        self.log = Logger(out_dir / "log.jsonl")
        self.model = build_train_model(cfg, tc.seed)
        self.state = RunState.start(tc)
        self.resumed = None                 # the checkpoint resumed from, until its optimizer is restored
        if resume and self.ckpt_path.is_file():
            self._resume()
        else:
            self.log.record({"type": "start", "model_config": cfg.to_dict(), "train_config": asdict(tc),
                             "machine": machine_description()})
        self.phase, self.opt = None, None
        self.t0 = time.time() - self.state.elapsed_s
        self.t_last_val = self.t_last_ckpt = time.time()
        self.window = _Window()

    def _resume(self) -> None:
        """Model weights and state from checkpoint.pt (a training checkpoint, not a model release)."""
        ckpt = torch.load(self.ckpt_path, map_location="cpu", weights_only=True)
        self.model.load_state_dict(ckpt["model"])
        self.state = RunState.from_dict(ckpt["state"])
        self.resumed = ckpt
        self.log.print(f"resumed from {self.ckpt_path} at image {self.state.images} "
                       f"({self.state.elapsed_s / 60:.1f} min)")

    def enter_phase(self) -> None:
        """Start (or resume) the state's phase if it is not the current one: optimizer and mode."""
        st, tc = self.state, self.tc
        if st.phase == self.phase:
            return
        self.phase = st.phase
        self.opt = _make_optimizer(self.model, tc, self.phase)
        if self.resumed is not None and self.resumed.get("phase") == self.phase:
            self.opt.load_state_dict(self.resumed["optimizer"])
        self.resumed = None
        _set_mode(self.model, self.phase, tc)
        what = "detection only" if self.phase == "det" else "masks, detector " + tc.mask_phase
        self.log.print(f"phase {self.phase} from image {st.images}: {what}")
        self.log.record({"type": "phase", "phase": self.phase, "step": st.step, "images": st.images,
                         "minutes": st.elapsed_s / 60})

    def set_lr(self) -> None:
        """The learning rate of this step (warm-up, drop), recording the drop once."""
        st, tc = self.state, self.tc
        progress = st.progress(tc)
        warmup = tc.warmup_steps if self.phase == "det" else tc.mask_warmup_steps
        factor = _lr_factor(st.phase_step, progress, warmup, tc)
        if progress >= tc.lr_drop_at and not st.lr_dropped():
            st.mark_lr_drop()
            self.log.record({"type": "lr_drop", "phase": self.phase, "step": st.step, "images": st.images})
        for g in self.opt.param_groups:
            g["lr"] = g["base_lr"] * factor

    def step(self, images: torch.Tensor, targets: list) -> None:
        """One optimisation step on a batch: images (B, 3, S, S), one target dict per image."""
        tc = self.tc
        images = images.contiguous(memory_format=torch.channels_last)   # (B, 3, S, S)
        frozen = _frozen_detector(self.phase, tc)
        with torch.set_grad_enabled(not frozen):
            det = self.model.detect(images)
        loss, parts = compute_losses(self.model, det, targets, tc, with_det=not frozen,
                                     with_mask=self.phase == "mask")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if tc.clip > 0:
            torch.nn.utils.clip_grad_norm_([p for g in self.opt.param_groups for p in g["params"]], tc.clip)
        self.opt.step()
        st = self.state
        st.step += 1
        st.images += images.shape[0]
        st.elapsed_s = time.time() - self.t0
        self.window.add(parts, images.shape[0])
        if st.step % tc.log_every == 0:
            self._log_window()
            self.window = _Window()

    def after_step(self, val, stop: bool) -> bool:
        """Validation, phase change and checkpoint after a step. Returns True when the run is over."""
        st, tc = self.state, self.tc
        phase_done = st.progress(tc) >= 1.0
        last = phase_done and self.phase == "mask"
        if val and (time.time() - self.t_last_val > tc.val_every_s or phase_done):
            self._validate(val)
            self.t_last_val = time.time()
        if phase_done and not last:                    # detection done: masks next
            st.start_mask_phase()
        if time.time() - self.t_last_ckpt > tc.ckpt_every_s or phase_done or stop:
            self._save_checkpoint()
            self.t_last_ckpt = time.time()
        return last or stop

    def release_meta(self) -> dict:
        st, tc = self.state, self.tc
        return {"images_seen": st.images, "train_minutes": round(st.elapsed_s / 60, 1),
                "det_phase_images": st.det_images_done, "machine": machine_description(),
                "input_size": tc.size, "normalize_mean": list(MEAN), "normalize_std": list(STD),
                "train_config": json.dumps(asdict(tc))}

    def _log_window(self) -> None:
        st, tc = self.state, self.tc
        img_per_s = self.window.img_per_s()
        avg = {k: v / tc.log_every for k, v in self.window.sums.items()}
        self.log.record({"type": "train", "step": st.step, "images": st.images, "phase": self.phase,
                         "minutes": st.elapsed_s / 60, "img_per_s": img_per_s,
                         "lr": self.opt.param_groups[-1]["lr"], **avg})
        images, minutes = st.phase_limits(tc)
        left = (1 - min(st.progress(tc), 1)) * images / max(img_per_s, 1e-6) / 60
        if minutes > 0:
            left = min(left, minutes - st.phase_elapsed_s / 60)
        main = " ".join(f"{k} {avg[k]:.3f}" for k in ("loss", "ce", "l1", "giou", "focal", "dice", "cls_acc")
                        if k in avg)
        self.log.print(f"[{self.phase}] step {st.step} img {st.images} {st.elapsed_s / 60:.1f} min "
                       f"{img_per_s:.1f} img/s (~{left:.0f} min left in phase) | {main}")

    def _validate(self, val) -> None:
        st, t = self.state, time.time()
        outs = predict_outputs(self.model, val)
        rec = {"type": "val", "step": st.step, "images": st.images, "minutes": st.elapsed_s / 60,
               "phase": self.phase}
        if self.phase == "mask":
            res = panoptic_eval(outs, val, self.tc.val_thresholds)
            rec["pq"] = {str(k): {g: v[g] for g in ("all", "things", "stuff")} for k, v in res.items()}
            best = max(res, key=lambda k: res[k]["all"]["pq"])
            msg = " ".join(f"{k:g}:{v['all']['pq']:.1f}" for k, v in res.items())
            self.log.print(f"  val PQ by threshold {msg} | best {best:g}: things {res[best]['things']['pq']:.1f} "
                           f"stuff {res[best]['stuff']['pq']:.1f} ({time.time() - t:.0f}s)")
        rec.update(detection_stats(outs, val))
        self.log.record(rec)
        self.log.print("  val detection: " + " ".join(f"{k} {v:.3f}" for k, v in rec.items()
                                                        if k.startswith("det_")))

    def _save_checkpoint(self) -> None:
        tmp = Path(str(self.ckpt_path) + ".tmp")
        torch.save({"model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
                    "state": self.state.to_dict(), "phase": self.phase}, tmp)
        os.replace(tmp, self.ckpt_path)


def train(cfg: DETRConfig, tc: TrainConfig, out_dir, resume: bool = True, release_path=None,
          stop_after_steps: int | None = None) -> DETRPanoptic:
    """Run (or resume) a training run in `out_dir` (checkpoint.pt, log.jsonl, final model)."""
    torch.set_num_threads(tc.threads)
    run = _Run(cfg, tc, Path(out_dir), resume)
    val = validation_scenes(tc.val_n, tc.size) if tc.val_n else []
    for images, targets in batches(tc, run.state.images):
        run.enter_phase()
        run.set_lr()
        run.step(images, targets)
        stop = stop_after_steps is not None and run.state.step >= stop_after_steps
        if run.after_step(val, stop):
            break
    run.model.eval()
    if release_path is not None:
        save_release(run.model, cfg, release_path, run.release_meta())
    return run.model
