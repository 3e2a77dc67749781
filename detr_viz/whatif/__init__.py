"""The what-if lab: switch parts of DETR off and watch a mask (or the panoptic map) change.

Every intervention is computed by the model's own modules from a trace's stored tensors; nothing
of the forward is re-implemented. Mask interventions re-run only the mask head, for one query
(beside a copy of itself, as the trace does, so that an untouched run is bit-identical to the
traced logits); merge interventions re-run only the panoptic merge; occlusion re-runs the trace.

    from detr_viz import whatif
    r = whatif.mask(t, 7, heads_off=[2, 5], renormalise=True)
    r.original, r.changed, r.diff           # (H/4, W/4) mask logits before / after, and after - before
    r.iou, r.sentence                       # IoU of the binarised masks (logit > 0), one sentence
    m = whatif.merge(t, drop_queries=[7])   # who takes query 7's pixels?
    o = whatif.occlude(t, (40, 30, 120, 90), progress=print)   # grey rectangle, full re-run

Results are cached per trace (`detr_viz.cache.cached`); a request that makes no sense (a head
index out of range, an unknown skip, an empty query list) raises ValueError with a sentence.
"""
from .common import SKIPS
from .mask import MaskRequest, MaskResult, mask, mask_request
from .merge import MergeResult, merge
from .occlude import OcclusionResult, occlude

__all__ = ["SKIPS", "MaskRequest", "MaskResult", "MergeResult", "OcclusionResult", "mask", "mask_request",
           "merge", "occlude"]
