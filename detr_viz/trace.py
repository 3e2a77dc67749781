"""One forward pass with every intermediate tensor recorded, under the names of `stages.py`.

`trace(model, image)` runs the model's own forward pieces (`detect`, `attention_maps`,
`mask_logits`) with forward hooks and pre-hooks on its modules; nothing of the forward is
re-implemented here. The mask head runs only for the queries that matter (those kept by the
merge, plus any asked for); `Trace.ensure_queries` runs it for more queries later. Stored
tensors are detached and on the CPU.
"""
from __future__ import annotations

import math
import re
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from .cache import DerivedCache
from .categories import CategoryTable, get_categories
from .detr import Detection
from .device import device_name, synchronize
from .images import Preprocessed, load_image, preprocess
from .postprocess import PanopticResult, class_probs, kept_queries, postprocess_panoptic, real_class_ranking
from .stages import stage, stage_names

# Per-head encoder self-attention (B x M x hw x hw) is stored when hw is at most this; above it
# (e.g. DC5 at 800 x 1066: hw = 3350, 359 MB a layer) it is recomputed on request from the
# layer's stored queries/keys.
ENCODER_ATTENTION_STORE_LIMIT = 1600

# Top-level blocks timed (and reported to the progress callback): module name -> timing key.
TIMED_BLOCKS = {
    "detr.backbone": "backbone",
    "detr.input_proj": "input_proj",
    "detr.transformer.encoder": "encoder",
    "detr.transformer.decoder": "decoder",
    "detr.class_embed": "heads",
    "detr.bbox_embed": "heads",
    "bbox_attention": "bbox_attention",
    "mask_head": "mask_head",
}
PROGRESS_TEXT = {
    "backbone": (1, "CNN backbone: Res2..Res5"),
    "input_proj": (1, "input_proj: Res5 -> d channels"),
    "encoder": (2, "transformer encoder"),
    "decoder": (3, "transformer decoder"),
    "bbox_attention": (4, "box attention maps"),
    "mask_head": (6, "mask head (FPN upsampling)"),
    "merge": (7, "panoptic merge"),
}


def _model_lock(model) -> threading.RLock:
    """One lock per model: hooks on a shared model must not see another session's forward."""
    lock = model.__dict__.get("_detr_viz_lock")
    if lock is None:
        lock = model.__dict__.setdefault("_detr_viz_lock", threading.RLock())
    return lock


def _cpu(t):
    return t.detach().to("cpu") if isinstance(t, torch.Tensor) else t


def _stage_modules(cfg) -> dict:
    """module name -> stage name, for modules whose plain output is the stage."""
    body = "detr.backbone.0.body."
    m = {body + "conv1": "backbone.conv1", body + "bn1": "backbone.bn1", body + "relu": "backbone.relu",
         body + "maxpool": "backbone.maxpool", body + "layer1": "backbone.res2", body + "layer2": "backbone.res3",
         body + "layer3": "backbone.res4", body + "layer4": "backbone.res5",
         "detr.backbone.1": "position", "detr.input_proj": "input_proj",
         "detr.class_embed": "decoder.class_logits", "bbox_attention.q_linear": "bbox_attention.q",
         "bbox_attention": "bbox_attention"}
    for i in range(cfg.enc_layers):
        m[f"detr.transformer.encoder.layers.{i}"] = f"encoder.layer{i}"
    for i in range(cfg.dec_layers):
        m[f"detr.transformer.decoder.layers.{i}"] = f"decoder.layer{i}"
    for part in ("concat", "lay1", "gn1", "relu1", "lay2", "gn2", "relu2", "adapter1", "up1", "fpn1",
                 "lay3", "gn3", "relu3", "adapter2", "up2", "fpn2", "lay4", "gn4", "relu4",
                 "adapter3", "up3", "fpn3", "lay5", "gn5", "relu5", "out_lay"):
        m[f"mask_head.{part}"] = f"mask_head.{part}"
    return {mod: st for mod, st in m.items() if st not in DERIVED}


# Stages not stored but re-made on request by the model's own parameter-free modules (or a frozen
# BN) from a stored neighbour: the ReLUs, the nearest upsamplings and the FPN sums of the mask head,
# and the stem's BN/ReLU. Values are bit-identical to the forward's; memory drops by about 60 %
# (R50 at 800 x 1066: 45 MB -> 16 MB per traced query, and 110 MB less in the stem).
# name -> (source stage, fn(model, trace, x) -> stage)
def _up(k):
    return lambda model, t, x: getattr(model.mask_head, f"up{k}")(x, t.tensors[f"mask_head.adapter{k}"].shape[-2:])


DERIVED = {
    "backbone.bn1": ("backbone.conv1", lambda model, t, x: model.detr.backbone[0].body.bn1(x)),
    "backbone.relu": ("backbone.bn1", lambda model, t, x: model.detr.backbone[0].body.relu(x)),
    **{f"mask_head.relu{k}": (f"mask_head.gn{k}", lambda model, t, x, k=k: getattr(model.mask_head, f"relu{k}")(x))
       for k in range(1, 6)},
    **{f"mask_head.up{k}": (f"mask_head.relu{k + 1}", _up(k)) for k in range(1, 4)},
    **{f"mask_head.fpn{k}": (f"mask_head.up{k}", lambda model, t, x, k=k: x + t.tensors[f"mask_head.adapter{k}"])
       for k in range(1, 4)},
}


def _per_head(module, args, kwargs):
    """Forward pre-hook: make nn.MultiheadAttention return per-head weights (B, M, L, S)."""
    kwargs["need_weights"] = True
    kwargs["average_attn_weights"] = False
    return args, kwargs


class _Recorder:
    """Registers the hooks that fill `store`, `timings` and `modules`; removes them on exit."""

    def __init__(self, model, store: dict, timings: dict, modules: dict, *, store_encoder_attention: bool,
                 only_prefix: str | None = None, progress=None, encoder_qk: dict | None = None):
        self.model, self.store, self.timings, self.modules = model, store, timings, modules
        self.encoder_qk = {} if encoder_qk is None else encoder_qk    # layer -> (q, key padding mask)
        # padded: the mask head runs one query beside a copy of itself (set by _mask_head_rows); the
        # copy is dropped from what is stored and from the module shapes.
        self.padded = False
        self.store_enc_attn = store_encoder_attention
        self.only_prefix = only_prefix
        self.progress = progress
        self.device = next(model.parameters()).device
        self.handles = []
        self._t0 = {}

    def _want(self, name):
        return self.only_prefix is None or name.startswith(self.only_prefix)

    def __enter__(self):
        cfg = self.model.config
        targets = _stage_modules(cfg)
        named = dict(self.model.named_modules())
        for name, mod in named.items():
            if not self._want(name):
                continue
            self.handles.append(mod.register_forward_hook(self._shape_hook(name)))
            if name in targets:
                self.handles.append(mod.register_forward_hook(self._store_hook(targets[name])))
            if name in TIMED_BLOCKS:
                key = TIMED_BLOCKS[name]
                self.handles.append(mod.register_forward_pre_hook(self._start(key)))
                self.handles.append(mod.register_forward_hook(self._stop(key)))
        if self.only_prefix is None:
            self._register_special(named, cfg)
        return self

    def _register_special(self, named, cfg):
        h = self.handles
        h.append(named["detr"].register_forward_pre_hook(self._detr_inputs))
        h.append(named["detr"].register_forward_hook(self._detr_outputs))
        h.append(named["detr.backbone.0"].register_forward_hook(
            lambda m, a, out: self._put("backbone.mask", out[1][-1])))
        h.append(named["detr.transformer"].register_forward_pre_hook(
            lambda m, a: self._put("decoder.query_embed", a[2])))
        h.append(named["detr.transformer"].register_forward_hook(self._transformer_outputs))
        for i in range(cfg.enc_layers):
            attn = named[f"detr.transformer.encoder.layers.{i}.self_attn"]
            if self.store_enc_attn:
                h.append(attn.register_forward_pre_hook(_per_head, with_kwargs=True))
                h.append(attn.register_forward_hook(self._attn_hook(f"encoder.layer{i}.self_attn")))
            else:   # keep q (= k) and the padding mask; weights are recomputed on request
                h.append(attn.register_forward_pre_hook(self._qk_hook(i), with_kwargs=True))
        for i in range(cfg.dec_layers):
            for mod_name, st in (("self_attn", "self_attn"), ("multihead_attn", "cross_attn")):
                attn = named[f"detr.transformer.decoder.layers.{i}.{mod_name}"]
                h.append(attn.register_forward_pre_hook(_per_head, with_kwargs=True))
                h.append(attn.register_forward_hook(self._attn_hook(f"decoder.layer{i}.{st}")))

    def __exit__(self, *exc):
        for handle in self.handles:
            handle.remove()
        self.handles.clear()

    # -- hook factories -------------------------------------------------------------------
    def _put(self, name, tensor):
        if self.padded and stage(name).per_query:
            tensor = tensor[:1]                                        # (1, ...) without the copy
        self.store[name] = _cpu(tensor)

    def _store_hook(self, stage_name):
        return lambda m, a, out: self._put(stage_name, out)

    def _attn_hook(self, stage_name):
        return lambda m, a, out: self._put(stage_name, out[1])   # (B, M, L, S) per-head weights

    def _qk_hook(self, i):
        def hook(m, args, kwargs):
            # q = k = src + pos (hw, B, d); key padding mask (B, hw) or None
            self.encoder_qk[i] = (_cpu(args[0]), _cpu(kwargs.get("key_padding_mask")))
        return hook

    def _shape_hook(self, name):
        def hook(m, a, out):
            if self.padded and name.startswith("mask_head") and isinstance(out, torch.Tensor) and len(out) == 2:
                out = out[:1]                                          # the query, not its copy
            shapes = _shapes(out)
            prev = self.modules.get(name)
            calls = (prev[2] + 1) if prev else 1
            self.modules[name] = (type(m).__name__, shapes if not prev or calls == 1 else prev[1], calls)
        return hook

    def _start(self, key):
        def hook(m, a):
            synchronize(self.device)
            self._t0[key] = time.perf_counter()
            if self.progress is not None and key in PROGRESS_TEXT:
                self.progress(*PROGRESS_TEXT[key])
        return hook

    def _stop(self, key):
        def hook(m, a, out):
            synchronize(self.device)
            self.timings[key] = self.timings.get(key, 0.0) + time.perf_counter() - self._t0.pop(key)
        return hook

    def _detr_inputs(self, m, args):
        self._put("input", args[0])                                  # (B, 3, H, W)
        self._put("input.mask", args[1])                             # (B, H, W)

    def _detr_outputs(self, m, args, det):
        self._put("decoder.boxes", det.boxes)                        # (L, B, N, 4)
        self._put("pred_logits", det.pred_logits)                    # (B, N, C+1)
        self._put("pred_boxes", det.pred_boxes)                      # (B, N, 4)

    def _transformer_outputs(self, m, args, out):
        hs, memory = out
        self._put("decoder.hs", hs)                                  # (L, B, N, d)
        self._put("memory", memory)                                  # (B, d, h, w)


def _check_queries(queries, n: int) -> None:
    bad = [q for q in queries if not 0 <= q < n]
    if bad:
        raise IndexError(f"queries {bad} out of range 0..{n - 1}")


def _mask_head_rows(model, det, bbox, queries, recorder: _Recorder | None = None) -> torch.Tensor:
    """model.mask_logits for `queries` (rows of bbox, (B, N, M, h, w)): (B, K, H/4, W/4).

    One query alone takes another convolution kernel path than a batch (last-bit differences from
    the full forward on CPU), so it runs beside a copy of itself and one is kept; `recorder`, if
    recording, is told to drop the copy."""
    padded = len(queries) == 1
    if recorder is not None:
        recorder.padded = padded
    rows = list(queries) * (2 if padded else 1)
    dev = next(model.parameters()).device
    return model.mask_logits(det, bbox[:, rows].to(dev))[:, :len(queries)]


def _shapes(out):
    if isinstance(out, torch.Tensor):
        return "x".join(map(str, out.shape))
    if isinstance(out, (list, tuple)):
        return "[" + ", ".join(_shapes(o) for o in out if o is not None) + "]"
    return type(out).__name__


@dataclass
class _DeviceView:
    tensors: dict


@dataclass
class Trace:
    """Every stage of one forward pass. `trace[name]` gives a tensor (CPU, detached)."""
    model: torch.nn.Module
    image: object                      # the original RGB PIL image (EXIF orientation applied)
    pre: Preprocessed                    # network input + original / processed sizes
    threshold: float
    categories: CategoryTable
    device: str
    device_name: str
    tensors: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)       # seconds per block (backbone, encoder, ...)
    modules_seen: dict = field(default_factory=dict)  # module name -> (type, output shapes, calls)
    mask_queries: list = field(default_factory=list)  # rows of the per-query stages
    panoptic: PanopticResult | None = None
    _merge_masks: dict = field(default_factory=dict)  # query -> (1, 1, H/4, W/4) logits run only for a merge
    # encoder layer -> (q = k = src + pos (hw, B, d), key padding mask (B, hw) or None), kept instead of
    # the per-head attention when that is too big to store (see ENCODER_ATTENTION_STORE_LIMIT)
    encoder_qk: dict = field(default_factory=dict)
    # values derived from this trace (pictures, tables, recomputations): see detr_viz.cache.cached
    derived: DerivedCache = field(default_factory=DerivedCache, repr=False, compare=False)

    # -- access -------------------------------------------------------------------------------
    @property
    def config(self):
        return self.model.config

    def names(self) -> list[str]:
        """Stage names present in this trace, in pipeline order."""
        return [n for n in stage_names(self.config) if n in self]

    def __contains__(self, name):
        if name in self.tensors:
            return True
        if name in DERIVED:
            return DERIVED[name][0] in self
        return _encoder_attention_layer(name) in self.encoder_qk

    def __getitem__(self, name) -> torch.Tensor:
        if name in self.tensors:
            return self.tensors[name]
        if name in DERIVED and name in self:
            return self._derive(name)
        if name in self:                  # encoder attention, recomputed from q/k
            return self.encoder_attention(_encoder_attention_layer(name))
        stage(name)                       # raises KeyError for names that are not stages at all
        raise KeyError(f"stage {name!r} was not recorded in this trace")

    def _derive(self, name, rows=None) -> torch.Tensor:
        """A DERIVED stage for all traced queries, or only rows `rows` of a per-query stage."""
        if name not in DERIVED:
            t = self.tensors[name]
            return t if rows is None else t[rows]
        source, fn = DERIVED[name]
        x = self._derive(source, rows)
        dev = next(self.model.parameters()).device
        with torch.no_grad(), _model_lock(self.model):      # no other session's hooks may see this call
            return _cpu(fn(self.model, self._on(dev), x.to(dev)))

    def _on(self, dev):
        """A view of this trace whose stored tensors are on `dev` (for DERIVED functions)."""
        if dev.type == "cpu":
            return self
        return _DeviceView({k: v.to(dev) for k, v in self.tensors.items() if k.startswith("mask_head.adapter")})

    def shape(self, name) -> tuple:
        if name in self.tensors:
            return tuple(self.tensors[name].shape)
        if name in DERIVED:
            source = DERIVED[name][0]
            if name.startswith("mask_head.up") or name.startswith("mask_head.fpn"):
                k = name[-1]
                return self.shape(source)[:2] + tuple(self.tensors[f"mask_head.adapter{k}"].shape[-2:])
            return self.shape(source)
        q = self.encoder_qk[_encoder_attention_layer(name)][0]            # (hw, B, d)
        return (q.shape[1], self.config.nheads, q.shape[0], q.shape[0])

    @property
    def modules(self) -> list[tuple[str, str, str]]:
        """Every named submodule with its type and output shape ("not called" if it never ran)."""
        rows = []
        for name, mod in self.model.named_modules():
            if name in self.modules_seen:
                typ, shapes, calls = self.modules_seen[name]
                rows.append((name or "(root)", typ, shapes + (f" (x{calls} calls)" if calls > 1 else "")))
            else:
                rows.append((name or "(root)", type(mod).__name__, "not called"))
        return rows

    @property
    def grid(self) -> tuple[int, int]:
        """(h, w) of the res5 grid the transformer works on."""
        return tuple(self.tensors["memory"].shape[-2:])

    # -- derived views --------------------------------------------------------------------------
    def encoder_attention(self, layer: int) -> torch.Tensor:
        """(B, M, hw, hw) per-head self-attention of an encoder layer (stored or recomputed)."""
        name = f"encoder.layer{layer}.self_attn"
        if name in self.tensors:
            return self.tensors[name]
        return self._recompute_encoder_attention(layer)

    def encoder_attention_row(self, layer: int, index: int) -> torch.Tensor:
        """(M, h, w): where grid cell `index` (row-major) looks in an encoder layer, per head."""
        h, w = self.grid
        name = f"encoder.layer{layer}.self_attn"
        if name in self.tensors:
            row = self.tensors[name][0, :, index]                       # (M, hw)
        else:
            row = self._recompute_encoder_attention(layer, slice(index, index + 1))[0, :, 0]   # (M, hw)
        return row.reshape(-1, h, w)

    def _recompute_encoder_attention(self, layer: int, rows: slice = slice(None)) -> torch.Tensor:
        """(B, M, R, hw): per-head attention of the grid cells `rows` in encoder layer `layer`, recomputed
        by the layer's own self-attention module from the stored q (= k) and padding mask. The one
        recompute path for encoder attention."""
        attn = self.model.detr.transformer.encoder.layers[layer].self_attn
        q, kpm = self.encoder_qk[layer]                                 # (hw, B, d), (B, hw) or None
        dev = next(self.model.parameters()).device
        with torch.no_grad(), _model_lock(self.model):
            qd = q.to(dev)
            w = attn(qd[rows], qd, qd, key_padding_mask=None if kpm is None else kpm.to(dev),
                     need_weights=True, average_attn_weights=False)[1]  # (B, M, R, hw)
        return w.cpu()

    def query(self, name: str, q: int) -> torch.Tensor:
        """One query's slice of a per-query stage (runs the mask head for it if needed)."""
        if not stage(name).per_query:
            raise ValueError(f"{name} is not a per-query stage")
        self.ensure_queries([q])
        row = self.mask_queries.index(int(q))
        if name == "pred_masks":
            return self.tensors[name][:, row]
        return self._derive(name, [row])[0]

    def mask_logits(self, queries) -> torch.Tensor:
        """(K, H/4, W/4) mask logits of `queries`: the traced rows of pred_masks, the rows a merge at
        another threshold computed (without recording stages), or, for any other query, traced now."""
        rows = []
        for q in (int(v) for v in queries):
            if q in self.mask_queries:
                rows.append(self.tensors["pred_masks"][0, self.mask_queries.index(q)])
            elif q in self._merge_masks:
                rows.append(self._merge_masks[q][0, 0])
            else:
                rows.append(self.query("pred_masks", q)[0])
        return torch.stack(rows) if rows else self.tensors["pred_masks"][0, :0]

    # -- more queries, other thresholds ------------------------------------------------------
    # A trace is shared by every session showing this image, so everything that runs the model or
    # grows the stored tensors holds the model's lock.
    def ensure_queries(self, queries) -> None:
        """Run the mask head (hooked) for queries not traced yet."""
        n = self.config.num_queries
        with _model_lock(self.model):
            new = [int(q) for q in dict.fromkeys(queries) if int(q) not in self.mask_queries]
            if not new:
                return
            _check_queries(new, n)
            store = {}
            with torch.no_grad(), _Recorder(self.model, store, {}, {}, store_encoder_attention=False,
                                            only_prefix="mask_head") as rec:
                masks = self._run_mask_head(new, rec)                   # (B, K', H/4, W/4)
            store["pred_masks"] = _cpu(masks)
            for name, t in store.items():
                if not stage(name).per_query:
                    continue
                dim = 1 if name == "pred_masks" else 0
                self.tensors[name] = torch.cat([self.tensors[name], t], dim=dim) if name in self.tensors else t
            self.mask_queries.extend(new)

    def _run_mask_head(self, queries, recorder: _Recorder | None = None) -> torch.Tensor:
        """The model's mask head for `queries`, fed from the stored tensors (on the model's device)."""
        dev = next(self.model.parameters()).device
        T = self.tensors
        det = Detection(features=[T[f"backbone.res{k}"].to(dev) for k in (2, 3, 4)] + [T["backbone.res5"]],
                        mask=T["backbone.mask"], pos=T["position"], src_proj=T["input_proj"].to(dev),
                        memory=T["memory"], hs=T["decoder.hs"], class_logits=T["decoder.class_logits"],
                        boxes=T["decoder.boxes"])
        return _mask_head_rows(self.model, det, T["bbox_attention"], queries, recorder)

    def merge(self, threshold: float | None = None, target_size=None) -> PanopticResult:
        """The panoptic merge at another threshold.

        Newly kept queries get their mask logits from the mask head without recording its stages
        (a low threshold may keep most of the N queries); `query()` records them when asked."""
        threshold = self.threshold if threshold is None else float(threshold)
        with _model_lock(self.model):
            kept = kept_queries(self.tensors["pred_logits"], threshold)
            missing = [q for q in kept if q not in self.mask_queries and q not in self._merge_masks]
            if missing:
                with torch.no_grad():
                    masks = _cpu(self._run_mask_head(missing))         # (1, K', H/4, W/4)
                for i, q in enumerate(missing):
                    self._merge_masks[q] = masks[:, i:i + 1]
            extra = [q for q in self._merge_masks if q not in self.mask_queries]
            rows = list(self.mask_queries) + extra
            masks = torch.cat([self.tensors["pred_masks"]] + [self._merge_masks[q] for q in extra], dim=1)
        outputs = {"pred_logits": self.tensors["pred_logits"], "pred_masks": masks, "mask_queries": rows}
        return postprocess_panoptic(outputs, self.pre.processed_size,
                                    target_size or self.pre.original_size, threshold, self.categories)

    # -- export -------------------------------------------------------------------------------------
    def to_npz(self, path) -> None:
        """Every stage as a float32/bool array (per-head encoder attention only where it is stored),
        plus the traced query indices, the panoptic id map and the segments."""
        arrays = {n: self[n].numpy() for n in self.names() if n in self.tensors or n in DERIVED}
        arrays["mask_queries"] = np.asarray(self.mask_queries, dtype=np.int64)
        if self.panoptic is not None:
            arrays["panoptic.id_map"] = self.panoptic.id_map
            arrays["panoptic.segments_json"] = np.asarray(self.panoptic.segments_json())
        np.savez_compressed(path, **arrays)

    @property
    def nbytes(self) -> int:
        """Memory held by the stored tensors (and the masks of merges at other thresholds, and the
        encoder's q / padding masks kept for recomputing its attention)."""
        qk = [t for pair in self.encoder_qk.values() for t in pair]
        tensors = list(self.tensors.values()) + list(self._merge_masks.values()) + qk
        return sum(v.numel() * v.element_size() for v in tensors if isinstance(v, torch.Tensor))

    @property
    def total_time(self) -> float:
        return sum(self.timings.values())


def _encoder_attention_layer(name: str) -> int | None:
    """3 for 'encoder.layer3.self_attn'; None for any other name."""
    m = re.fullmatch(r"encoder\.layer(\d+)\.self_attn", name)
    return int(m.group(1)) if m else None


def best_query(pred_logits: torch.Tensor) -> int:
    """The query with the highest probability of a real class (no-object excluded)."""
    return real_class_ranking(class_probs(pred_logits))[0]


_CONFIG = object()      # "take it from the model's config"


def trace(model, image, threshold: float | None = None, queries=None, progress=None,
          size: int | None = None, max_size=_CONFIG) -> Trace:
    """Run `model` once on `image` (path, bytes, file object or PIL image) and record every stage.

    threshold: score threshold of the merge (default: the model config's, 0.85 for the official
      checkpoints). queries: extra query indices to run through the mask head besides the kept
      ones. progress: optional callable(step_number, text), called as each block starts.
    size, max_size: the resize (shorter side, cap of the longer side; max_size None = no cap);
      default: the config's input_size / max_input_size (800 / 1333 for the official checkpoints,
      as the official evaluation).
    """
    model.eval()
    cfg = model.config
    threshold = cfg.threshold if threshold is None else float(threshold)
    extra = [int(q) for q in (queries or [])]
    _check_queries(extra, cfg.num_queries)
    pil = load_image(image)
    pre = preprocess(pil, size=cfg.input_size if size is None else size,
                     max_size=cfg.max_input_size if max_size is _CONFIG else max_size)
    dev = next(model.parameters()).device
    t = Trace(model=model, image=pil, pre=pre, threshold=threshold,
              categories=get_categories(cfg.categories, cfg.num_classes),
              device=str(dev), device_name=device_name(dev))
    x = pre.tensor.to(dev)                                              # (1, 3, H, W)
    hw = math.ceil(x.shape[-2] / cfg.stride) * math.ceil(x.shape[-1] / cfg.stride)
    with torch.no_grad(), _model_lock(model), _Recorder(
            model, t.tensors, t.timings, t.modules_seen, encoder_qk=t.encoder_qk,
            store_encoder_attention=hw <= ENCODER_ATTENTION_STORE_LIMIT, progress=progress) as rec:
        det = model.detect(x)
        bbox = model.attention_maps(det)                                # (1, N, M, h, w) all queries
        wanted = list(dict.fromkeys(kept_queries(det.pred_logits, threshold) + extra))
        if not wanted:      # nothing kept: still trace the most confident query, so every stage has data
            wanted = [best_query(det.pred_logits)]
        masks = _mask_head_rows(model, det, bbox, wanted, rec)          # (1, K, H/4, W/4)
    t.tensors["pred_masks"] = _cpu(masks)
    t.tensors["decoder.class_probs"] = t.tensors["decoder.class_logits"].softmax(-1)
    t.mask_queries = wanted
    if progress is not None:
        progress(*PROGRESS_TEXT["merge"])
    t0 = time.perf_counter()
    t.panoptic = t.merge(threshold)
    t.timings["merge"] = time.perf_counter() - t0
    return t
