"""The panoptic merge, with exactly the semantics of the official `PostProcessPanoptic`.

Steps (see ../shared/reference/postprocess-panoptic.md):
 1. softmax over all C+1 class logits; score = max, label = argmax.
 2. keep a query iff label != no-object and score > threshold (strictly): `keep_mask`, the one
    place this rule is written (the tracer and the pages call it or read `PanopticResult.kept`).
 3. bilinearly resize the kept mask logits (H/4 x W/4) to the processed (network input) size.
 4. every pixel goes to the kept query with the highest mask softmax (no void, no mask threshold).
 5. stuff merge (first pass only): pixels of every kept query of a stuff class go to the first
    kept query of that class.
 6. the index map is resized to the target size with PIL nearest neighbour (via the RGB id encoding).
 7. areas are counted at the target size; segments of <= 4 pixels are dropped and the argmax is
    redone without them and without the stuff merge, until none is that small.
Quirk stated plainly: after step 5 every non-first query of a merged stuff class owns 0 pixels, so
step 7 always drops it and re-runs the argmax; the final map never contains the merged map of
step 5, and the dropped duplicate's pixels go to whichever remaining query has the highest logit.

Besides the map and segments, the result keeps the intermediate results a teacher shows.
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .categories import CategoryTable

SMALL_AREA = 4      # segments with at most this many pixels (at target size) are dropped


def id2rgb(ids: np.ndarray) -> np.ndarray:
    """(H, W) int -> (H, W, 3) uint8, R = id % 256, G = id // 256 % 256, B = id // 65536 % 256."""
    ids = ids.astype(np.int64)
    return np.stack([ids % 256, ids // 256 % 256, ids // 65536 % 256], axis=-1).astype(np.uint8)


def rgb2id(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.int32)
    return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]


def _resize_ids(ids: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of an id map, as the official code does it (through an RGB PNG)."""
    h, w = size
    img = Image.fromarray(id2rgb(ids)).resize((w, h), resample=Image.NEAREST)
    return rgb2id(np.asarray(img)).astype(np.int32)


@dataclass
class PanopticResult:
    id_map: np.ndarray                  # (H_t, W_t) int32 segment id per pixel, target size
    segments: list                      # dicts: id, category_id, name, isthing, area, score, query, color
    processed_size: tuple               # (h, w) the network input size the masks were resized to
    target_size: tuple                  # (H_t, W_t)
    threshold: float
    scores: np.ndarray                  # (N,) max class probability of every query
    labels: np.ndarray                  # (N,) argmax class of every query (no-object included)
    kept: np.ndarray                    # (K,) query indices that passed the threshold, in query order
    winner_before_merge: np.ndarray     # (h, w) int32 query index winning each pixel, -1 if nothing kept
    winner_after_merge: np.ndarray      # (h, w) int32 the same after the stuff merge (first pass)
    winner_final: np.ndarray            # (h, w) int32 after the small-segment loop (processed size)
    stuff_merges: list = field(default_factory=list)   # dicts: category_id, name, queries (first survives)
    dropped: list = field(default_factory=list)        # dicts: query, category_id, name, area, reason, round
    rounds: int = 0                     # passes of the small-segment loop that dropped something

    @property
    def query_map(self) -> np.ndarray:
        """(H_t, W_t) int32: the query index owning each pixel (-1 where nothing was kept)."""
        lut = np.array([s["query"] for s in self.segments] or [-1], dtype=np.int32)
        return lut[self.id_map] if self.segments else np.full(self.id_map.shape, -1, np.int32)

    def segment_of_query(self, q: int):
        return next((s for s in self.segments if s["query"] == q), None)

    def colorize(self, alpha_image: np.ndarray | None = None, alpha: float = 0.0) -> np.ndarray:
        """(H_t, W_t, 3) uint8 colour picture of the map (optionally blended over an image)."""
        palette = np.array([s["color"] for s in self.segments] or [(0, 0, 0)], dtype=np.float32)
        rgb = palette[self.id_map] if self.segments else np.zeros((*self.id_map.shape, 3), np.float32)
        if alpha_image is not None and alpha > 0:
            rgb = (1 - alpha) * rgb + alpha * np.asarray(alpha_image, dtype=np.float32)
        return rgb.clip(0, 255).astype(np.uint8)

    def png_bytes(self) -> bytes:
        """The colour panoptic picture as PNG bytes."""
        buf = io.BytesIO()
        Image.fromarray(self.colorize()).save(buf, format="PNG")
        return buf.getvalue()

    def official_png_bytes(self) -> bytes:
        """PNG with ids encoded as the official post-processor does (R + 256 G + 65536 B)."""
        buf = io.BytesIO()
        Image.fromarray(id2rgb(self.id_map)).save(buf, format="PNG")
        return buf.getvalue()

    def segments_json(self) -> str:
        return json.dumps({"segments_info": self.segments, "threshold": self.threshold,
                           "processed_size": list(self.processed_size),
                           "target_size": list(self.target_size)}, indent=2)


def instance_color(base, k: int) -> tuple[int, int, int]:
    """Category colour for the first instance, then slightly shifted shades for the next ones."""
    if k == 0:
        return tuple(int(c) for c in base)
    rng = np.random.default_rng(k * 7919 + sum(base))
    return tuple(int(v) for v in np.clip(np.asarray(base) + rng.integers(-60, 61, 3), 0, 255))


# ---------------------------------------------------------------------------------------------
# The keep rule, written once: the tracer, the merge and the pages all call these.
# ---------------------------------------------------------------------------------------------
def class_probs(pred_logits: torch.Tensor) -> torch.Tensor:
    """(..., N, C+1) class logits of one image -> (N, C+1) probabilities (softmax over all C+1,
    no-object last), on the CPU in float32 so that every caller gets the same bits."""
    logits = pred_logits.detach().float().cpu()
    return logits.reshape(-1, logits.shape[-1]).softmax(-1)         # (N, C+1)


def query_scores(probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, C+1) probabilities -> score (N,) = max probability, label (N,) = argmax (no-object included)."""
    return probs.max(-1)


def keep_mask(scores, labels, threshold: float, no_object: int):
    """(N,) bool: the queries the merge keeps, label not no-object and score > threshold (strictly).
    Works on tensors and on NumPy arrays alike."""
    return (labels != no_object) & (scores > threshold)


def kept_queries(pred_logits: torch.Tensor, threshold: float) -> list[int]:
    """Indices of the queries the merge keeps (`keep_mask` on `class_probs(pred_logits)`), in order."""
    probs = class_probs(pred_logits)                                # (N, C+1)
    scores, labels = query_scores(probs)
    return torch.nonzero(keep_mask(scores, labels, threshold, probs.shape[-1] - 1)).flatten().tolist()


def real_class_ranking(probs: torch.Tensor) -> list[int]:
    """All N queries, most sure of a real class first (no-object left out of the probability; ties in
    query order). Among the kept queries this is also their order by score."""
    return torch.argsort(probs[:, :-1].max(-1).values, descending=True, stable=True).tolist()


def _argmax_ids(masks: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(K, h*w) logits -> (h, w) index of the winning kept query; zeros if K == 0 (as official)."""
    if masks.shape[0] == 0:
        return torch.zeros((h, w), dtype=torch.long)
    return masks.transpose(0, 1).softmax(-1).argmax(-1).view(h, w)


def postprocess_panoptic(outputs, processed_size, target_size=None, threshold: float = 0.85,
                         categories: CategoryTable | None = None) -> PanopticResult:
    """Merge one image's DETR outputs into a panoptic map.

    outputs: dict with pred_logits (1, N, C+1) or (N, C+1) and pred_masks (1, N, h4, w4) or
      (N, h4, w4); rows of pred_masks may be a subset of the queries if `outputs["mask_queries"]`
      lists which queries they are (it must include every query that passes the threshold).
    processed_size: (h, w) of the image fed to the network (before batch padding).
    target_size: (H, W) of the output map; default processed_size (as the official code).
    categories: the model's CategoryTable (which class indices are things, their names); required,
      as the official `is_thing_map` is: there is no silent COCO default. For the official COCO
      checkpoints pass `coco_categories(250)`.
    """
    logits = outputs["pred_logits"].detach().float().cpu()
    masks = outputs["pred_masks"].detach().float().cpu()
    if logits.dim() == 3:
        if logits.shape[0] != 1:
            raise ValueError("postprocess_panoptic handles one image; pass outputs[b] per image")
        logits, masks = logits[0], masks[0]                 # (N, C+1), (N', h4, w4)
    num_classes = logits.shape[-1] - 1
    _check_categories(categories, num_classes)
    h, w = _size(processed_size)
    target_size = (h, w) if target_size is None else _size(target_size)

    scores, labels = query_scores(class_probs(logits))      # (N,), (N,)
    keep = keep_mask(scores, labels, threshold, num_classes)   # (N,) bool
    kept = torch.nonzero(keep).flatten()                    # (K,) query indices
    rows = _rows_for(outputs, kept, masks.shape[0])
    cur_scores, cur_classes = scores[kept], labels[kept]
    cur_masks = masks[rows]                                 # (K, h4, w4)
    if cur_masks.shape[0] > 0:
        # (1, K, h4, w4) layout as the official code: the kernel path (and last-bit rounding) depends on it
        cur_masks = F.interpolate(cur_masks[None], size=(h, w), mode="bilinear").squeeze(0)   # (K, h, w)
    else:
        cur_masks = cur_masks.new_zeros((0, h, w))
    cur_masks = cur_masks.flatten(1)                        # (K, h*w)

    # Stuff bookkeeping: stuff label -> kept positions, in query order.
    equiv: dict[int, list[int]] = {}
    for k, label in enumerate(cur_classes.tolist()):
        if not categories.is_thing(label):
            equiv.setdefault(label, []).append(k)

    qidx = kept.clone()                                      # kept position -> query index
    m_id = _argmax_ids(cur_masks, h, w)                      # (h, w) kept position
    winner_before = _to_query(m_id, qidx)
    for positions in equiv.values():
        if len(positions) > 1:
            for k in positions:
                m_id.masked_fill_(m_id.eq(k), positions[0])
    winner_after = _to_query(m_id, qidx)
    stuff_merges = [{"category_id": lab, "name": categories.label(lab), "queries": [int(qidx[k]) for k in pos]}
                    for lab, pos in equiv.items() if len(pos) > 1]

    ids = _resize_ids(m_id.numpy(), target_size)            # (H_t, W_t)
    area = np.bincount(ids.ravel(), minlength=len(cur_scores))[:len(cur_scores)]
    dropped, rounds, winner_final = [], 0, winner_after
    merged_into = {int(qidx[k]): int(qidx[pos[0]]) for pos in equiv.values() if len(pos) > 1 for k in pos[1:]}
    if cur_classes.numel() > 0:
        while True:
            small = torch.as_tensor(area <= SMALL_AREA)      # (K,) bool
            if not small.any():
                break
            rounds += 1
            for k in torch.nonzero(small).flatten().tolist():
                q = int(qidx[k])
                reason = (f"stuff merge: its pixels went to query {merged_into[q]}, leaving it {area[k]} px"
                          if rounds == 1 and q in merged_into else f"only {area[k]} px (<= {SMALL_AREA}) at the target size")
                dropped.append({"query": q, "category_id": int(cur_classes[k]), "name": categories.label(int(cur_classes[k])),
                                "area": int(area[k]), "reason": reason, "round": rounds})
            cur_scores, cur_classes = cur_scores[~small], cur_classes[~small]
            cur_masks, qidx = cur_masks[~small], qidx[~small]
            m_id = _argmax_ids(cur_masks, h, w)             # redo without the stuff merge
            winner_final = _to_query(m_id, qidx)
            ids = _resize_ids(m_id.numpy(), target_size)
            area = np.bincount(ids.ravel(), minlength=len(cur_scores))[:len(cur_scores)]

    segments, seen = [], {}
    for i in range(len(cur_scores)):
        cat = categories[int(cur_classes[i])]
        n = seen.get(cat.id, 0)
        seen[cat.id] = n + 1
        segments.append({"id": i, "category_id": cat.id, "name": cat.name,
                         "isthing": categories.is_thing(cat.id), "area": int(area[i]),
                         "score": round(float(cur_scores[i]), 6), "query": int(qidx[i]),
                         "color": instance_color(cat.color, n if cat.isthing else 0)})
    return PanopticResult(ids.astype(np.int32), segments, (h, w), target_size, float(threshold),
                          scores.numpy(), labels.numpy(), kept.numpy(), winner_before, winner_after,
                          winner_final, stuff_merges, dropped, rounds)


def postprocess_panoptic_batch(outputs, processed_sizes, target_sizes=None, threshold: float = 0.85,
                               categories: CategoryTable | None = None) -> list[PanopticResult]:
    """The official PostProcessPanoptic's batch form: one PanopticResult per image of the batch.

    outputs: pred_logits (B, N, C+1) and pred_masks (B, N, h4, w4); processed_sizes, target_sizes:
    B sizes (h, w) each (a list, or a (B, 2) tensor); target_sizes default to processed_sizes. As in
    the official code, each image's masks are stretched whole to its processed size (a padded border
    of the batch is not cropped first)."""
    logits, masks = outputs["pred_logits"], outputs["pred_masks"]
    B = logits.shape[0]
    target_sizes = processed_sizes if target_sizes is None else target_sizes
    if not len(processed_sizes) == len(target_sizes) == B == masks.shape[0]:
        raise ValueError(f"{B} images in the outputs, but {len(processed_sizes)} processed sizes and "
                         f"{len(target_sizes)} target sizes")
    return [postprocess_panoptic({"pred_logits": logits[b:b + 1], "pred_masks": masks[b:b + 1]},
                                 processed_sizes[b], target_sizes[b], threshold, categories) for b in range(B)]


def _check_categories(categories, num_classes: int) -> None:
    """The merge needs to know which classes are things: no silent COCO default."""
    if categories is None:
        raise TypeError("postprocess_panoptic needs the model's category table (which classes are things): "
                        "pass categories=detr_viz.categories.get_categories(model.config.categories, "
                        f"{num_classes}), or coco_categories({num_classes}) for the official COCO checkpoints")
    if categories.num_classes != num_classes:
        raise ValueError(f"the category table has {categories.num_classes} classes but the logits have "
                         f"{num_classes} (+ no object); pass the table of the model that made them")


def _size(size) -> tuple[int, int]:
    """(h, w) from a tuple, list, array or tensor of 2 numbers (also shaped (1, 2), as the official
    demo passes `torch.as_tensor(img.shape[-2:]).unsqueeze(0)`)."""
    values = [int(v) for v in np.asarray(size.cpu() if isinstance(size, torch.Tensor) else size).reshape(-1)]
    if len(values) != 2:
        raise ValueError(f"a size is (height, width); got {size!r}")
    return values[0], values[1]


def _to_query(m_id: torch.Tensor, qidx: torch.Tensor) -> np.ndarray:
    """(h, w) kept positions -> (h, w) query indices; -1 where nothing is kept."""
    if qidx.numel() == 0:
        return np.full(tuple(m_id.shape), -1, dtype=np.int32)
    return qidx[m_id].numpy().astype(np.int32)


def _rows_for(outputs, kept: torch.Tensor, n_rows: int) -> torch.Tensor:
    """Rows of pred_masks holding the kept queries (pred_masks may hold only a subset)."""
    traced = outputs.get("mask_queries")
    if traced is None:
        return kept
    traced = [int(q) for q in traced]
    if len(traced) != n_rows:
        raise ValueError(f"mask_queries lists {len(traced)} queries but pred_masks has {n_rows} rows")
    pos = {q: i for i, q in enumerate(traced)}
    missing = [int(q) for q in kept if int(q) not in pos]
    if missing:
        raise ValueError(f"queries {missing} pass the threshold but have no mask; trace them first")
    return torch.as_tensor([pos[int(q)] for q in kept], dtype=torch.long)
