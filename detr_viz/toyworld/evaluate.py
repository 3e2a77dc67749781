"""Evaluating a toy-world model: its outputs on scenes, and PQ through the app's panoptic merge."""
from __future__ import annotations

import torch

from ..metrics import PQAccumulator
from ..postprocess import postprocess_panoptic
from ..trace import kept_queries
from .categories import toyworld_categories
from .data import image_tensor

DETECTION_STAT_THRESHOLD = 0.7     # score for the cheap detection numbers logged before masks exist


@torch.no_grad()
def predict_outputs(model, scenes, batch_size: int = 8):
    """Model outputs per scene (dicts with batch dimension 1), in eval mode."""
    was_training = model.training
    model.eval()
    outs = []
    for i in range(0, len(scenes), batch_size):
        x = torch.stack([image_tensor(s.image) for s in scenes[i:i + batch_size]])   # (B, 3, S, S)
        x = x.contiguous(memory_format=torch.channels_last)
        o = model(x)
        for b in range(x.shape[0]):
            outs.append({k: v[b:b + 1] for k, v in o.items()})
    model.train(was_training)
    return outs


def panoptic_eval(outputs, scenes, thresholds) -> dict:
    """PQ summary per merge threshold: {threshold: summary (see metrics.PQAccumulator)}."""
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


def detection_stats(outputs, scenes, thr: float = DETECTION_STAT_THRESHOLD) -> dict:
    """Cheap detection numbers: kept queries per GT segment and how many GT classes are found."""
    kept, found, gt = 0, 0, 0
    for out, scene in zip(outputs, scenes):
        keep = kept_queries(out["pred_logits"], thr)                    # the merge's keep rule
        kept += len(keep)
        pred_labels = out["pred_logits"][0, keep].argmax(-1).tolist()    # (K,) their classes
        for s in scene.segments:
            gt += 1
            if s["category_id"] in pred_labels:
                pred_labels.remove(s["category_id"])
                found += 1
    return {"det_kept_per_gt": kept / max(gt, 1), "det_recall_cls": found / max(gt, 1)}
