"""The toy world's configuration, written once: the shipped model's architecture and merge
threshold (`TOYWORLD_CONFIG`, used by the registry, the trainer and the evaluation script), and
the settings of a training run (`TrainConfig`)."""
from __future__ import annotations

from dataclasses import dataclass, fields

from ..config import DETRConfig
from .categories import NUM_CLASSES
from .scenes import DEFAULT_SIZE

# Chosen on 300 validation scenes (`scripts/train_toyworld.py --finalize`; PQ 83.65 there, the best
# of 0.5 .. 0.95); the README's model card gives the sweep.
MERGE_THRESHOLD = 0.85
THRESHOLD_SWEEP = (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)     # what --finalize compares


def attention_scale(nheads: int, input_size: int, stride: int) -> float:
    """`bbox_attention_scale` of a small model trained from scratch: M x h x w of its attention maps
    at the training size (8 heads x 10 x 10 = 800 for 160 px scenes at stride 16), so that the
    box-attention maps (each sums to 1 over h x w) weigh like the projected features in the mask head."""
    side = input_size // stride
    return float(nheads * side * side)


# The shipped model (assets/models/toyworld.pt; model card in docs/toyworld-model-card.md).
# ResNet-18 with a dilated C5 (stride 16), 2 encoder + 3 decoder layers, 16 queries. It sees the
# scenes at their training size: shorter side 160 px, longer side at most 3x that.
TOYWORLD_CONFIG = DETRConfig(
    backbone="resnet18", dilation=True, hidden_dim=128, nheads=8, enc_layers=2, dec_layers=3,
    dim_feedforward=192, num_queries=16, num_classes=NUM_CLASSES, dropout=0.0, frozen_bn=True,
    bbox_attention_scale=attention_scale(8, DEFAULT_SIZE, 16), categories="toyworld",
    threshold=MERGE_THRESHOLD, input_size=DEFAULT_SIZE, max_input_size=3 * DEFAULT_SIZE)


def toyworld_model_config(**kw) -> DETRConfig:
    """`TOYWORLD_CONFIG` with some fields overridden (smaller models in tests, other runs)."""
    return TOYWORLD_CONFIG.replace(**kw)


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
    def from_dict(cls, d: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        out = cls(**{k: v for k, v in d.items() if k in known})
        out.val_thresholds = tuple(out.val_thresholds)
        return out
