"""DETR's losses on the toy world: class cross-entropy (down-weighted no-object), L1 and GIoU box
losses on every decoder layer (auxiliary losses), focal + dice mask losses on the matched queries."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..boxes import cxcywh_to_xyxy, generalized_box_iou
from ..segmentation import DETRPanoptic
from .config import TrainConfig
from .matcher import hungarian_match


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
    giou = (1 - torch.diag(generalized_box_iou(cxcywh_to_xyxy(pred), cxcywh_to_xyxy(tgt)))).sum() / num_boxes
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
