"""Hungarian matching of DETR's queries to the ground-truth segments of one image (needs scipy)."""
from __future__ import annotations

import torch
from scipy.optimize import linear_sum_assignment

from ..boxes import cxcywh_to_xyxy, generalized_box_iou
from .config import TrainConfig


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
    giou = generalized_box_iou(cxcywh_to_xyxy(boxes.float()), cxcywh_to_xyxy(tboxes))   # (N, K)
    cost = -tc.w_class * prob + tc.w_l1 * l1 - tc.w_giou * giou
    q, t = linear_sum_assignment(cost.numpy())
    return torch.as_tensor(q, dtype=torch.long), torch.as_tensor(t, dtype=torch.long)
