"""Box operations (as DETR's util/box_ops.py): the cxcywh -> xyxy conversion and generalized IoU.

Boxes are (..., 4) tensors or arrays: "cxcywh" = (centre x, centre y, width, height), "xyxy" =
(x0, y0, x1, y1), "xywh" = COCO's (left, top, width, height).
"""
from __future__ import annotations

import numpy as np
import torch


def cxcywh_to_xyxy(b):
    """(..., 4) cxcywh -> (..., 4) xyxy; a torch tensor (differentiable) or a numpy array."""
    cx, cy, w, h = (b[..., i] for i in range(4))
    corners = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
    return torch.stack(corners, dim=-1) if torch.is_tensor(b) else np.stack(corners, axis=-1)


def xywh_to_cxcywh(b: torch.Tensor) -> torch.Tensor:
    """(..., 4) COCO xywh -> (..., 4) cxcywh, in the same units."""
    x, y, w, h = b.unbind(-1)
    return torch.stack([x + w / 2, y + h / 2, w, h], dim=-1)


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
