"""Shared pieces of the what-if lab: checking requests, naming queries, comparing masks and maps."""
from __future__ import annotations

import numpy as np
import torch

from ..cache import cached

# skip name -> the mask head's adapter that brings it in (adapter1 + res4, adapter2 + res3, adapter3 + res2)
SKIPS = {"res4": "adapter1", "res3": "adapter2", "res2": "adapter3"}


def phrase(items) -> str:
    """[2] -> "2", [2, 5] -> "2 and 5", [1, 2, 5] -> "1, 2 and 5"."""
    items = [str(i) for i in items]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def check_query(trace, q, what: str = "query") -> int:
    """q as an int in 0..N-1, or a ValueError that says the range."""
    n = trace.config.num_queries
    if isinstance(q, bool) or not hasattr(q, "__index__"):
        raise ValueError(f"{what} {q!r} is not a query index: give a whole number 0..{n - 1}")
    qi = int(q)
    if not 0 <= qi < n:
        raise ValueError(f"{what} {q!r} is out of range: this model has {n} queries (0..{n - 1})")
    return qi


def query_name(trace, q: int) -> str:
    """'query 7 (star)': the index and its most likely real class (no-object excluded)."""
    probs = trace["decoder.class_probs"][-1, 0, q, :-1]                 # (C,)
    return f"query {q} ({trace.categories.label(int(probs.argmax()))})"


def binary_iou(a: torch.Tensor, b: torch.Tensor) -> tuple[float, int, int, int]:
    """IoU of the masks a > 0 and b > 0, with |a|, |b| and |a & b| (pixels). Two empty masks: IoU 1."""
    ma, mb = a > 0, b > 0
    inter, union = int((ma & mb).sum()), int((ma | mb).sum())
    return (inter / union if union else 1.0), int(ma.sum()), int(mb.sum()), inter


def owner_change(before: np.ndarray, after: np.ndarray) -> tuple[np.ndarray, float]:
    """(H, W) query maps -> (H, W) bool 'changed owner' and the share of pixels that did."""
    changed = before != after
    return changed, float(changed.mean()) if changed.size else 0.0


def takers(before: np.ndarray, after: np.ndarray, q: int) -> dict[int, int]:
    """Where query q's pixels went: new owner (-1 = nobody) -> pixels, largest first."""
    owners, counts = np.unique(after[before == q], return_counts=True)
    order = np.argsort(-counts, kind="stable")
    return {int(owners[i]): int(counts[i]) for i in order}


@cached(keep=1)
def traced_owners(trace) -> np.ndarray:
    """(H, W) int32 query owning each pixel of `trace.panoptic` (-1: nobody), computed once per trace."""
    return trace.panoptic.query_map
