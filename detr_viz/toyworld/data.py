"""Training data of the toy world: network inputs and DETR targets of generated scenes."""
from __future__ import annotations

import numpy as np
import torch

from ..boxes import xywh_to_cxcywh
from ..images import preprocess
from .config import TrainConfig
from .scenes import VAL_SEED0, generate_scene


def image_tensor(image) -> torch.Tensor:
    """PIL RGB -> (3, H, W) float, through the app's preprocessing (ImageNet normalisation) at the
    image's own size: scenes are drawn at the size the model sees them, so nothing is resized."""
    return preprocess(image, size=min(image.size), max_size=None).tensor[0]     # (3, H, W)


def scene_targets(scene) -> dict:
    """Training targets of one scene: labels (K,), boxes (K, 4) cxcywh in [0, 1], masks
    (K, H/4, W/4) = the fraction of each 4x4 cell the segment covers (soft targets)."""
    H, W = scene.id_map.shape
    labels = torch.tensor([s["category_id"] for s in scene.segments], dtype=torch.long)   # (K,)
    xywh = torch.tensor([s["bbox"] for s in scene.segments], dtype=torch.float32).reshape(-1, 4)
    boxes = xywh_to_cxcywh(xywh) / torch.tensor([W, H, W, H], dtype=torch.float32)        # (K, 4)
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
