"""Occlusion: grey out a rectangle of the photo, re-run the whole trace, compare the panoptic maps."""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from ..cache import cached
from ..images import resized_size
from ..postprocess import PanopticResult
from ..trace import trace as run_trace
from .common import owner_change, phrase, query_name, traced_owners

GREY = (128, 128, 128)
_progress = threading.local()       # the progress callback of the running request (not a cache key)


@dataclass
class OcclusionResult:
    """The occluded photo's panoptic result next to the trace's. `original` (an attribute, not a
    field) is `trace.panoptic` itself, so that the per-trace cache does not count it twice."""
    box: tuple                      # (x0, y0, x1, y1) in original image pixels, x1/y1 exclusive
    image: Image.Image              # the occluded photo
    changed: PanopticResult         # the panoptic result of the occluded photo (same sizes)
    owner_changed: np.ndarray       # (H, W) bool: the owning query differs
    changed_share: float
    kept_before: list               # kept query indices
    kept_after: list
    sentence: str

    @property
    def lost(self) -> list:
        return [q for q in self.kept_before if q not in self.kept_after]

    @property
    def gained(self) -> list:
        return [q for q in self.kept_after if q not in self.kept_before]


def occlude(trace, box, progress=None, fill=GREY) -> OcclusionResult:
    """Grey out box = (x0, y0, x1, y1) of the original photo (pixels, x1 and y1 exclusive), trace the
    occluded photo with the same model, sizes and threshold, and compare. progress: optional
    callable(step_number, text), as for `detr_viz.trace` (only called when not cached)."""
    H, W = trace.pre.original_size
    try:
        x0, y0, x1, y1 = (int(round(float(v))) for v in box)
    except (TypeError, ValueError):
        raise ValueError(f"a box is (x0, y0, x1, y1) in pixels; got {box!r}") from None
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, W), min(y1, H)
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"the box {tuple(box)} covers no pixel of the {W} x {H} photo: give (x0, y0, x1, y1) "
                         "with x0 < x1 and y0 < y1 inside the photo")
    fill = tuple(int(c) for c in fill)
    _progress.fn = progress
    try:
        return _occlude(trace, (x0, y0, x1, y1), fill)
    finally:
        _progress.fn = None


@cached(keep=2)
def _occlude(trace, box: tuple, fill: tuple) -> OcclusionResult:
    image = trace.image.convert("RGB").copy()
    ImageDraw.Draw(image).rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=fill)
    pre = trace.pre
    size, max_size = _resize_that_gives(pre, trace.config)
    new = run_trace(trace.model, image, threshold=trace.threshold, progress=getattr(_progress, "fn", None),
                    size=size, max_size=max_size)
    before, after = traced_owners(trace), new.panoptic.query_map
    owner_changed, share = owner_change(before, after)
    kb, ka = [int(q) for q in trace.panoptic.kept], [int(q) for q in new.panoptic.kept]
    (bx0, by0, bx1, by1), (H, W) = box, pre.original_size
    text = (f"Greying out {bx1 - bx0} x {by1 - by0} px ({(bx1 - bx0) * (by1 - by0) / (H * W):.0%} of the photo), "
            f"{share:.1%} of the pixels change owner")
    lost = [q for q in kb if q not in ka]
    gained = [q for q in ka if q not in kb]
    if lost:
        text += f"; {phrase([query_name(trace, q) for q in lost])} {'is' if len(lost) == 1 else 'are'} no longer kept"
    if gained:
        text += f"; {phrase([query_name(new, q) for q in gained])} {'is' if len(gained) == 1 else 'are'} newly kept"
    if not lost and not gained:
        text += f"; the same {len(kb)} queries are kept"
    result = OcclusionResult(box, image, new.panoptic, owner_changed, share, kb, ka, text + ".")
    result.original = trace.panoptic
    return result


def _resize_that_gives(pre, cfg) -> tuple[int, int | None]:
    """(size, max_size) that resize the original photo to the trace's processed size again: the
    config's, or else the processed shorter side with no cap (the same size whenever a cap acted)."""
    h, w = pre.original_size
    for size, max_size in ((cfg.input_size, cfg.max_input_size), (min(pre.processed_size), None),
                           (min(pre.processed_size), max(pre.processed_size))):
        if tuple(resized_size(w, h, size, max_size)) == tuple(pre.processed_size):
            return size, max_size
    raise ValueError(f"cannot tell how the {w} x {h} photo was resized to {pre.processed_size}: "
                     "trace the occluded photo yourself with the same size and max_size")
