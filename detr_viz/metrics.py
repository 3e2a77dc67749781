"""Panoptic Quality (PQ = SQ x RQ) by the COCO panoptic definition, on id maps + segment lists.

Per image, a predicted and a ground-truth segment of the same category match when their IoU is
> 0.5 (so each segment matches at most one other). Per category, over all images:

    PQ = sum(IoU of matches) / (TP + FP/2 + FN/2),  SQ = sum(IoU) / TP,  RQ = TP / (TP + FP/2 + FN/2)

Unmatched ground truths are FN, unmatched predictions FP. Void: ground-truth pixels whose id is
not in the ground-truth segment list are void; they are removed from the union of a pair, and an
unmatched prediction that lies mostly (> 50 %) in void is not counted as FP. Predicted pixels
whose id is not in the predicted segment list are unlabelled (they belong to no prediction).
Overall / things / stuff PQ are unweighted means over the categories that occur (TP+FP+FN > 0).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class ClassStat:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    iou: float = 0.0        # sum of the IoUs of the matches

    @property
    def count(self) -> int:
        return self.tp + self.fp + self.fn

    def pq_sq_rq(self) -> tuple[float, float, float]:
        if self.count == 0:
            return 0.0, 0.0, 0.0
        denom = self.tp + 0.5 * self.fp + 0.5 * self.fn
        sq = self.iou / self.tp if self.tp else 0.0
        rq = self.tp / denom
        return sq * rq, sq, rq


@dataclass
class PQAccumulator:
    """Sums TP / FP / FN / IoU per category over images; `summary()` gives PQ, SQ, RQ in %."""
    stats: dict = field(default_factory=dict)   # category_id -> ClassStat

    def _stat(self, cat: int) -> ClassStat:
        return self.stats.setdefault(int(cat), ClassStat())

    def add(self, gt_ids, gt_segments, pred_ids, pred_segments) -> None:
        """Add one image. *_ids: (H, W) int maps; *_segments: dicts with at least id, category_id."""
        for cat, kind, iou in match_segments(gt_ids, gt_segments, pred_ids, pred_segments):
            st = self._stat(cat)
            if kind == "tp":
                st.tp += 1
                st.iou += iou
            elif kind == "fp":
                st.fp += 1
            else:
                st.fn += 1

    def summary(self, isthing: dict) -> dict:
        """isthing: category_id -> bool. Returns {"all"|"things"|"stuff": {pq, sq, rq, n},
        "per_class": {category_id: {pq, sq, rq, tp, fp, fn}}} with pq/sq/rq in 0..100."""
        per_class = {}
        for cat, st in sorted(self.stats.items()):
            if st.count == 0:
                continue
            pq, sq, rq = st.pq_sq_rq()
            per_class[cat] = {"pq": 100 * pq, "sq": 100 * sq, "rq": 100 * rq,
                              "tp": st.tp, "fp": st.fp, "fn": st.fn}
        out = {"per_class": per_class}
        groups = {"all": lambda c: True, "things": lambda c: isthing[c], "stuff": lambda c: not isthing[c]}
        for name, pick in groups.items():
            cats = [c for c in per_class if pick(c)]
            out[name] = {k: (float(np.mean([per_class[c][k] for c in cats])) if cats else 0.0)
                         for k in ("pq", "sq", "rq")}
            out[name]["n"] = len(cats)
        return out


def match_segments(gt_ids, gt_segments, pred_ids, pred_segments, iou_threshold: float = 0.5):
    """One image: yields (category_id, "tp" | "fp" | "fn", iou) for every counted segment."""
    gt_ids, pred_ids = np.asarray(gt_ids), np.asarray(pred_ids)
    if gt_ids.shape != pred_ids.shape:
        raise ValueError(f"id maps differ in size: gt {gt_ids.shape}, pred {pred_ids.shape}")
    G, P = len(gt_segments), len(pred_segments)
    gi = _index_map(gt_ids, gt_segments)                    # (H, W) in 0..G (G = void)
    pi = _index_map(pred_ids, pred_segments)                # (H, W) in 0..P (P = unlabelled)
    inter = np.bincount((gi * (P + 1) + pi).ravel(), minlength=(G + 1) * (P + 1)).reshape(G + 1, P + 1)
    gt_area = inter[:G].sum(1)                              # (G,)
    pred_area = inter[:, :P].sum(0)                         # (P,) includes void pixels
    pred_void = inter[G, :P]                                # (P,) pixels of each prediction on void

    gt_cat = [int(s["category_id"]) for s in gt_segments]
    pred_cat = [int(s["category_id"]) for s in pred_segments]
    gt_hit, pred_hit = np.zeros(G, bool), np.zeros(P, bool)
    for g in range(G):
        for p in np.nonzero(inter[g, :P])[0]:
            if gt_cat[g] != pred_cat[p]:
                continue
            union = gt_area[g] + pred_area[p] - inter[g, p] - pred_void[p]
            iou = inter[g, p] / union
            if iou > iou_threshold:                         # at most one such p per g
                gt_hit[g] = pred_hit[p] = True
                yield gt_cat[g], "tp", float(iou)
    for g in np.nonzero(~gt_hit)[0]:
        yield gt_cat[g], "fn", 0.0
    for p in np.nonzero(~pred_hit)[0]:
        if pred_area[p] == 0 or pred_void[p] > 0.5 * pred_area[p]:
            continue                                        # empty, or mostly on void: ignored
        yield pred_cat[p], "fp", 0.0


def _index_map(ids: np.ndarray, segments) -> np.ndarray:
    """(H, W) segment ids -> (H, W) positions in `segments`; ids not listed -> len(segments)."""
    seg_ids = np.array([int(s["id"]) for s in segments], dtype=np.int64)
    if len(np.unique(seg_ids)) != len(seg_ids):
        raise ValueError("segment ids are not unique")
    out = np.full(ids.shape, len(segments), dtype=np.int64)
    if len(seg_ids):
        order = np.argsort(seg_ids)
        pos = np.searchsorted(seg_ids[order], ids)
        pos = np.clip(pos, 0, len(seg_ids) - 1)
        hit = seg_ids[order][pos] == ids
        out[hit] = order[pos[hit]]
    return out


def panoptic_quality(pairs, isthing: dict) -> dict:
    """PQ over images. pairs: iterable of (gt_ids, gt_segments, pred_ids, pred_segments)."""
    acc = PQAccumulator()
    for gt_ids, gt_segs, pred_ids, pred_segs in pairs:
        acc.add(gt_ids, gt_segs, pred_ids, pred_segs)
    return acc.summary(isthing)


def format_table(summary: dict, names: dict) -> str:
    """Plain-text table: overall / things / stuff, then one row per category."""
    lines = [f"{'':<12}{'PQ':>7}{'SQ':>7}{'RQ':>7}{'N':>5}"]
    for group in ("all", "things", "stuff"):
        s = summary[group]
        lines.append(f"{group:<12}{s['pq']:7.1f}{s['sq']:7.1f}{s['rq']:7.1f}{s['n']:5d}")
    lines.append("")
    lines.append(f"{'class':<12}{'PQ':>7}{'SQ':>7}{'RQ':>7}{'TP':>6}{'FP':>6}{'FN':>6}")
    for cat, s in summary["per_class"].items():
        lines.append(f"{names.get(cat, str(cat)):<12}{s['pq']:7.1f}{s['sq']:7.1f}{s['rq']:7.1f}"
                     f"{s['tp']:6d}{s['fp']:6d}{s['fn']:6d}")
    return "\n".join(lines)
