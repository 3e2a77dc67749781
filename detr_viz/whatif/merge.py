"""Merge interventions: drop kept queries, switch off the stuff merge or the small-segment filter,
change the threshold; the result is a PanopticResult comparable with `trace.panoptic`.

Dropping queries and changing the threshold go through the official merge (`postprocess_panoptic`)
unchanged: a dropped query's class logits are set to "no object" so the merge does not keep it
(its real score and label are restored in the result). The two switches the official merge does not
have are in `_switched_merge` below, a stand-in that goes once `postprocess_panoptic` grows the
parameters `stuff_merge=True, min_area=SMALL_AREA` (min_area None = no small-segment filter).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..cache import cached
from ..postprocess import SMALL_AREA, PanopticResult, _resize_ids, instance_color, postprocess_panoptic
from ..trace import kept_queries
from .common import check_query, owner_change, phrase, query_name, takers, traced_owners


@dataclass
class MergeResult:
    """The merge with an intervention. `original` (an attribute, not a field) is `trace.panoptic`
    itself, so that the per-trace cache does not count its bytes a second time."""
    changed: PanopticResult         # the merge with the intervention
    owner_changed: np.ndarray       # (H_t, W_t) bool: the pixel's owning query differs
    changed_share: float            # share of the pixels that changed owner
    taken_by: dict                  # dropped query -> {new owner query (-1 nobody): pixels}
    sentence: str
    drop_queries: tuple = ()
    stuff_merge: bool = True
    small_filter: bool = True
    threshold: float = 0.0


def merge(trace, drop_queries=None, stuff_merge=True, small_filter=True, threshold=None) -> MergeResult:
    """The panoptic merge of `trace` with kept queries dropped (who takes their pixels?), without
    the stuff merge, without the small-segment filter (segments of <= 4 pixels), or at another
    threshold (default: the trace's). With nothing changed it equals `trace.panoptic`."""
    threshold = trace.threshold if threshold is None else float(threshold)
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"a threshold is a probability in [0, 1); got {threshold}")
    if isinstance(drop_queries, (int, np.integer)):
        drop_queries = (drop_queries,)
    if drop_queries is not None and len(drop_queries) == 0:
        raise ValueError("drop_queries is an empty list: name the kept queries to drop, or leave it out")
    drops = tuple(sorted({check_query(trace, q, "dropped query") for q in drop_queries or ()}))
    kept = kept_queries(trace["pred_logits"], threshold)
    lost = [q for q in drops if q not in kept]
    if lost:
        raise ValueError(f"{phrase(lost)} {'is' if len(lost) == 1 else 'are'} not kept at threshold {threshold:.2f}, "
                         f"so there is nothing to drop: choose from the kept queries {kept}")
    return _merge(trace, drops, bool(stuff_merge), bool(small_filter), threshold)


@cached(keep=8)
def _merge(trace, drops: tuple, stuff_merge: bool, small_filter: bool, threshold: float) -> MergeResult:
    original = trace.panoptic
    changed = panoptic_with(trace, drops, stuff_merge, small_filter, threshold)
    before, after = traced_owners(trace), changed.query_map
    owner_changed, share = owner_change(before, after)
    taken_by = {q: takers(before, after, q) for q in drops}
    sentence = _sentence(trace, drops, stuff_merge, small_filter, threshold, share, taken_by, original, changed)
    result = MergeResult(changed, owner_changed, share, taken_by, sentence, drops, stuff_merge, small_filter,
                         threshold)
    result.original = original
    return result


def panoptic_with(trace, drops=(), stuff_merge=True, small_filter=True, threshold=None) -> PanopticResult:
    """The PanopticResult of the merge with the intervention (checked arguments)."""
    threshold = trace.threshold if threshold is None else threshold
    kept = kept_queries(trace["pred_logits"], threshold)
    if any(q not in trace.mask_queries for q in kept):
        trace.merge(threshold)            # computes the masks of newly kept queries (without recording stages)
    logits = trace["pred_logits"]                                       # (1, N, C+1)
    if drops:
        logits = logits.clone()
        logits[0, list(drops)] = float("-inf")
        logits[0, list(drops), -1] = 0.0                                # certainly "no object"
    rows = [q for q in kept if q not in drops]
    outputs = {"pred_logits": logits, "pred_masks": trace.mask_logits(rows)[None], "mask_queries": rows}
    if stuff_merge and small_filter:
        result = postprocess_panoptic(outputs, trace.pre.processed_size, trace.pre.original_size, threshold,
                                      trace.categories)
    else:
        result = _switched_merge(outputs, trace, threshold, stuff_merge, small_filter)
    if drops:   # the dropped queries' real score and label, not the forced "no object"
        scores, labels = trace["pred_logits"][0].float().softmax(-1).max(-1)   # (N,), as the merge does
        result = dataclasses.replace(result, scores=scores.numpy(), labels=labels.numpy())
    return result


# ---- stand-in for postprocess_panoptic(..., stuff_merge=, min_area=) ---------------------------------
# To be replaced by one call of postprocess_panoptic once it has these two parameters.

class _AllThings:
    """A category table that calls every class a thing, so the official merge folds no stuff."""

    def __init__(self, table):
        self._table = table

    def is_thing(self, idx) -> bool:
        return True

    def __getitem__(self, idx):
        return self._table[idx]

    def __getattr__(self, name):                                        # label, used, no_object, ...
        return getattr(self._table, name)


def _switched_merge(outputs, trace, threshold, stuff_merge: bool, small_filter: bool) -> PanopticResult:
    """The official merge without the stuff merge (every class treated as a thing, then the segments'
    isthing put back) and/or without the small-segment filter (the first pass's map, every kept
    query a segment, even of 0 pixels)."""
    cats = trace.categories
    result = postprocess_panoptic(outputs, trace.pre.processed_size, trace.pre.original_size, threshold,
                                  cats if stuff_merge else _AllThings(cats))
    if not stuff_merge:
        segments = [dict(s, isthing=cats.is_thing(s["category_id"])) for s in result.segments]
        result = dataclasses.replace(result, segments=segments, stuff_merges=[])
    if small_filter:
        return result
    first = result.winner_after_merge                                   # (h, w) query index, first pass
    kept = [int(q) for q in result.kept]
    position = np.full(trace.config.num_queries + 1, 0, np.int64)
    position[kept] = np.arange(len(kept))
    ids = _resize_ids(position[first], result.target_size) if kept else result.id_map   # (H_t, W_t)
    area = np.bincount(ids.ravel(), minlength=len(kept))[:len(kept)]
    segments, seen = [], {}
    for i, q in enumerate(kept):
        label = int(result.labels[q])
        cat = cats[label]
        n = seen.get(cat.id, 0)
        seen[cat.id] = n + 1
        segments.append({"id": i, "category_id": cat.id, "name": cat.name, "isthing": cats.is_thing(cat.id),
                         "area": int(area[i]), "score": round(float(result.scores[q]), 6), "query": q,
                         "color": instance_color(cat.color, n if cat.isthing else 0)})
    return dataclasses.replace(result, id_map=ids.astype(np.int32), segments=segments, winner_final=first,
                               dropped=[], rounds=0)


def _sentence(trace, drops, stuff_merge, small_filter, threshold, share, taken_by, original, changed) -> str:
    parts = []
    if drops:
        parts.append(f"without {phrase([query_name(trace, q) for q in drops])}")
    if not stuff_merge:
        parts.append("without the stuff merge")
    if not small_filter:
        parts.append(f"without the small-segment filter (<= {SMALL_AREA} px)")
    if threshold != trace.threshold:
        parts.append(f"at threshold {threshold:.2f} instead of {trace.threshold:.2f}")
    what = ", ".join(parts) or "with nothing changed"
    n0, n1 = len(original.segments), len(changed.segments)
    text = f"{what[0].upper()}{what[1:]}, {share:.1%} of the pixels change owner ({n0} segments -> {n1})"
    for q in drops:
        went = [(o, n) for o, n in taken_by[q].items() if n]
        if went:
            top = "; ".join(f"{n:,} px to {query_name(trace, o) if o >= 0 else 'nobody'}" for o, n in went[:3])
            text += f"; query {q}'s pixels go: {top}"
    return text + "."

