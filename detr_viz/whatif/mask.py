"""Mask interventions for one query: heads off, attention replaced, features vs attention, skips off.

The mask head re-runs for the query through the trace's own runner (`Trace._run_mask_head`, the
query beside a copy of itself), with forward hooks on the model's own modules doing the change:
  - `mask_head.concat` (the Tap after the concat, (2, d + M, h, w)): its first d channels are
    input_proj(Res5), its last M the query's attention maps times `attention_scale`; the hook
    puts in the changed maps and/or zeros the features;
  - `mask_head.adapter1..3` (res4, res3, res2 skips): the hook returns zeros (the skip adds nothing).
An untouched request installs no hook, so it reproduces the traced logits bit for bit.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..cache import cached
from ..trace import _model_lock
from .common import SKIPS, binary_iou, check_query, phrase, query_name


@dataclass(frozen=True)
class MaskRequest:
    """A checked, normalised mask intervention (hashable: it keys the cache and can go in a URL)."""
    heads_off: tuple = ()             # sorted head indices whose maps are switched off
    renormalise: bool = False         # rescale the remaining maps so that they sum to 1 again
    attention: tuple | None = None    # None, ("uniform",), ("query", j) or ("shift", dx, dy)
    features_off: bool = False        # zero input_proj(Res5) in the concat: attention only
    attention_off: bool = False       # zero all M maps in the concat: features only
    skips_off: tuple = ()             # of "res4", "res3", "res2" (in that order)

    @property
    def untouched(self) -> bool:
        return self == MaskRequest(renormalise=self.renormalise) and not self._rescales

    @property
    def _rescales(self) -> bool:
        """renormalise only acts when mass was removed (heads off or a shift)."""
        return self.renormalise and bool(self.heads_off or (self.attention and self.attention[0] == "shift"))

    def as_kwargs(self) -> dict:
        """The keyword arguments of `mask` that make this request (e.g. to keep it in a URL)."""
        kw = {"heads_off": list(self.heads_off), "renormalise": self.renormalise,
              "attention": list(self.attention) if self.attention else None, "features_off": self.features_off,
              "attention_off": self.attention_off, "skips_off": list(self.skips_off)}
        return {k: v for k, v in kw.items() if v}

    def describe(self) -> str:
        """'with heads 2 and 5 off (the rest renormalised), without the res2 skip'."""
        parts = []
        if self.attention is not None:
            kind = self.attention[0]
            if kind == "uniform":
                parts.append("with uniform attention maps")
            elif kind == "query":
                parts.append(f"with query {self.attention[1]}'s attention maps")
            else:
                dx, dy = self.attention[1:]
                moves = [f"{abs(dx)} cell{'s' * (abs(dx) != 1)} {'right' if dx > 0 else 'left'}"] if dx else []
                moves += [f"{abs(dy)} cell{'s' * (abs(dy) != 1)} {'down' if dy > 0 else 'up'}"] if dy else []
                parts.append("with the maps shifted " + (" and ".join(moves) or "by nothing"))
        if self.heads_off:
            s = "s" if len(self.heads_off) > 1 else ""
            parts.append(f"with head{s} {phrase(self.heads_off)} off")
        if self._rescales:
            parts.append("the rest renormalised")
        if self.attention_off:
            parts.append("without the attention maps (features only)")
        if self.features_off:
            parts.append("without the image features (attention only)")
        if self.skips_off:
            s = "s" if len(self.skips_off) > 1 else ""
            parts.append(f"without the {phrase(self.skips_off)} skip{s}")
        return ", ".join(parts) or "with nothing changed"


def mask_request(trace, heads_off=(), renormalise=False, attention=None, features_off=False,
                 attention_off=False, skips_off=()) -> MaskRequest:
    """Check a request against the trace's model and normalise it; ValueError with a sentence if it
    makes no sense."""
    M = trace.config.nheads
    heads = []
    for h in heads_off or ():
        if isinstance(h, bool) or not isinstance(h, int) and not (hasattr(h, "__index__")):
            raise ValueError(f"head {h!r} is not a head index: give whole numbers 0..{M - 1}")
        if not 0 <= int(h) < M:
            raise ValueError(f"head {h} is out of range: this model has {M} heads (0..{M - 1})")
        heads.append(int(h))
    heads = tuple(sorted(set(heads)))
    if isinstance(skips_off, str):
        skips_off = (skips_off,)
    unknown = [s for s in skips_off or () if s not in SKIPS]
    if unknown:
        raise ValueError(f"unknown skip {unknown[0]!r}: choose from {', '.join(SKIPS)}")
    skips = tuple(s for s in SKIPS if s in set(skips_off or ()))
    att = _check_attention(trace, attention)
    if attention_off and (heads or att is not None):
        raise ValueError("attention_off already zeroes every attention map: switch heads off or replace the "
                         "maps without it")
    if renormalise and len(heads) == M:
        raise ValueError(f"all {M} heads are off, so nothing is left to renormalise: leave at least one head on, "
                         "or switch renormalise off (all maps zero)")
    return MaskRequest(heads, bool(renormalise), att, bool(features_off), bool(attention_off), skips)


def _check_attention(trace, attention):
    if attention is None:
        return None
    if isinstance(attention, str):
        attention = (attention,)
    kinds = "None, 'uniform', ('query', j) or ('shift', dx, dy)"
    if not isinstance(attention, (tuple, list)) or not attention:
        raise ValueError(f"attention {attention!r} is not understood: give {kinds}")
    kind, args = attention[0], tuple(attention[1:])
    if kind == "uniform" and not args:
        return ("uniform",)
    if kind == "query" and len(args) == 1:
        return ("query", check_query(trace, args[0], "the query to borrow maps from,"))
    if kind == "shift" and len(args) == 2:
        h, w = trace.grid
        if not all(isinstance(v, int) or hasattr(v, "__index__") for v in args):
            raise ValueError(f"a shift is a whole number of cells (dx, dy); got {args!r}")
        dx, dy = (int(v) for v in args)
        if abs(dx) >= w or abs(dy) >= h:
            raise ValueError(f"a shift of ({dx}, {dy}) cells moves the maps off the {h} x {w} grid: "
                             f"keep |dx| < {w} and |dy| < {h}")
        return ("shift", dx, dy)
    raise ValueError(f"attention {attention!r} is not understood: give {kinds}")


@dataclass
class MaskResult:
    """One query's mask before and after an intervention. Masks are at the mask head's resolution
    (H/4 x W/4 of the network input); areas count its pixels where the logit is > 0."""
    query: int
    request: MaskRequest
    original: torch.Tensor      # (H/4, W/4) traced mask logits
    changed: torch.Tensor       # (H/4, W/4) mask logits with the intervention
    diff: torch.Tensor          # (H/4, W/4) changed - original
    maps: torch.Tensor          # (M, h, w) the attention maps fed to the mask head (before attention_scale)
    iou: float                  # IoU of original > 0 and changed > 0
    area_before: int            # pixels (at H/4 x W/4) of original > 0
    area_after: int
    kept: int                   # pixels in both
    sentence: str

    @property
    def kept_share(self) -> float:
        """Share of the original mask's pixels that are still in the changed mask (1 if it was empty)."""
        return self.kept / self.area_before if self.area_before else 1.0


def mask(trace, q, heads_off=(), renormalise=False, attention=None, features_off=False, attention_off=False,
         skips_off=()) -> MaskResult:
    """Query q's mask logits with an intervention, next to the traced ones.

    heads_off: head indices whose attention maps are switched off (set to zero); renormalise: then
      rescale the remaining maps so that they sum to 1 again (the maps come from one softmax over
      heads and cells). attention: replace the query's maps first: "uniform" (1 / (M * cells)
      everywhere), ("query", j) (query j's maps), or ("shift", dx, dy) (moved dx cells right and dy
      down; what leaves the grid is lost, the cells it leaves are 0). features_off: zero
      input_proj(Res5) in the concat (the head sees attention only); attention_off: zero all the
      maps (features only). skips_off: any of "res4", "res3", "res2": that adapter adds nothing.
    A query that was not traced is traced first (its stages are recorded, as `Trace.query` does)."""
    q = check_query(trace, q)
    return _mask(trace, q, mask_request(trace, heads_off, renormalise, attention, features_off,
                                        attention_off, skips_off))


@cached(keep=16)
def _mask(trace, q: int, req: MaskRequest) -> MaskResult:
    original = trace.mask_logits([q])[0]                               # (H/4, W/4), traced if it was not
    maps = changed_maps(trace, q, req)                                  # (M, h, w)
    changed = run_mask_head(trace, q, None if req.untouched else maps, req.features_off, req.skips_off)
    iou, before, after, kept = binary_iou(original, changed)
    return MaskResult(q, req, original, changed, changed - original, maps, iou, before, after, kept,
                      _sentence(trace, q, req, iou, before, after, kept))


def _sentence(trace, q, req, iou, before, after, kept) -> str:
    """'With heads 2 and 5 off, query 7 (star)'s mask keeps 83% of its 1,204 pixels and gains 35 (IoU 0.81).'"""
    who = f"{query_name(trace, q)}'s mask"
    if req.untouched:
        return f"With nothing changed, {who} is the traced one ({before:,} pixels, IoU {iou:.2f})."
    d = req.describe()
    what = f"{d[0].upper()}{d[1:]}, {who}"
    if not before:
        return f"{what} was empty and now covers {after:,} pixels (IoU {iou:.2f})."
    return f"{what} keeps {kept / before:.0%} of its {before:,} pixels and gains {after - kept:,} (IoU {iou:.2f})."


def changed_maps(trace, q: int, req: MaskRequest) -> torch.Tensor:
    """(M, h, w): query q's attention maps after the request's replacement, heads off and renormalising."""
    bbox = trace["bbox_attention"][0]                                   # (N, M, h, w)
    maps = bbox[q]
    M, h, w = maps.shape
    att = req.attention
    if att is not None and att[0] == "uniform":
        valid = ~trace["backbone.mask"][0]                              # (h, w), False on padding
        maps = valid.to(maps.dtype).expand(M, h, w) / (M * valid.sum())
    elif att is not None and att[0] == "query":
        maps = bbox[att[1]]
    elif att is not None:
        maps = shift(maps, att[1], att[2])
    if req.heads_off:
        maps = maps.clone()
        maps[list(req.heads_off)] = 0
    if req._rescales:
        total = maps.sum()
        if total <= 0:
            raise ValueError("the maps that are left hold no attention at all, so they cannot be renormalised: "
                             "switch fewer heads off or shift less")
        maps = maps / total
    if req.attention_off:
        maps = torch.zeros_like(maps)
    return maps


def shift(maps: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """(M, h, w) maps moved dx cells right and dy cells down; the cells left behind are 0."""
    out = torch.zeros_like(maps)
    h, w = maps.shape[-2:]
    out[:, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        maps[:, max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)]
    return out


def run_mask_head(trace, q: int, maps: torch.Tensor | None = None, features_off: bool = False,
                  skips_off=()) -> torch.Tensor:
    """(H/4, W/4) mask logits of query q, the mask head fed `maps` (M, h, w) instead of the traced
    ones (None: unchanged), the features zeroed (features_off), and the named skips dropped."""
    model = trace.model
    head = model.mask_head
    d = trace.config.hidden_dim
    hooks = []

    def concat(module, args, x):                                        # x: (2, d + M, h, w), q and its copy
        x = x.clone()
        if features_off:
            x[:, :d] = 0
        if maps is not None:
            x[:, d:] = maps.to(x.device) * head.attention_scale          # as the forward scales them
        return x

    with torch.no_grad(), _model_lock(model):          # no other session's forward may see these hooks
        try:
            if maps is not None or features_off:
                hooks.append(head.concat.register_forward_hook(concat))
            for name in skips_off:
                hooks.append(getattr(head, SKIPS[name]).register_forward_hook(
                    lambda module, args, out: torch.zeros_like(out)))
            out = trace._run_mask_head([q])                              # (1, 1, H/4, W/4)
        finally:
            for hook in hooks:
                hook.remove()
    return out[0, 0].detach().cpu()
