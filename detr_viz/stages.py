"""The seven steps of DETR panoptic segmentation and the named stages (tensors) of each.

This is the one place stage names are defined. Pages, tests and the command line refer to
these names (`stage_names(config)` expands the per-layer ones), never to ad-hoc strings.
Shapes use B = batch, N = queries, K = queries run through the mask head, M = heads,
d = hidden size, h x w = the res5 grid (H/32 x W/32, or H/16 x W/16 with DC5), L = decoder layers.
"""
from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Step:
    number: int
    key: str
    title: str
    summary: str
    question: str = ""          # the curriculum's question this step answers, if any


STEPS = (
    Step(1, "backbone", "CNN backbone",
         "A ResNet turns the image into feature maps Res2..Res5; Res5 is projected to d channels."),
    Step(2, "encoder", "Transformer encoder: the encoded image",
         "Self-attention over the h x w grid of projected Res5 features, with sine positions, "
         "gives the d x h x w encoded image.",
         "We take the encoded image (d x H/32 x W/32) and send it to multi-head attention: "
         "from where do we take this encoded image?"),
    Step(3, "decoder", "Decoder: box embeddings",
         "N learned object queries attend to the encoded image and become N box embeddings, "
         "each with a class and a box, for things and stuff."),
    Step(4, "box_attention", "Box attention maps",
         "Each box embedding attends over the encoded image with M heads: N x M x h x w maps.",
         "We send d x N box embeddings to multi-head attention and get N x M x H/32 x W/32 maps: "
         "what do we do here?"),
    Step(5, "concat_res5", "Concatenation with Res5",
         "Each query's M maps are stacked with input_proj(Res5), the d-channel features that "
         "entered the encoder.",
         "Then we concatenate these maps with the Res5 block: where is this coming from?"),
    Step(6, "upsampling", "FPN-style upsampling with Res4, Res3, Res2",
         "Five 3x3 conv blocks (conv, GroupNorm, ReLU) work on each query's stack; between them three "
         "nearest upsamplings add adapted Res4, Res3 and Res2 features; a last conv gives one mask "
         "logit map at H/4 x W/4.",
         "Then we perform the above steps (explain these steps)."),
    Step(7, "merge", "The merge: the panoptic map",
         "Keep confident queries, give every pixel to the query with the highest mask logit, "
         "merge stuff of one class, drop tiny segments.",
         "And then we are finally left with the panoptic segmentation."),
)


@dataclass(frozen=True)
class Stage:
    name: str                   # may contain "{i}" (expanded per encoder / decoder layer)
    step: int
    description: str
    shape: str                  # symbolic shape
    per_query: bool = False     # rows are the queries in Trace.mask_queries, not all N


STAGES = (
    # step 1: backbone
    Stage("input", 1, "normalised input image (ImageNet mean/std)", "B x 3 x H x W"),
    Stage("input.mask", 1, "pixel padding mask (True = padding)", "B x H x W"),
    Stage("backbone.conv1", 1, "stem: 7x7 conv, stride 2", "B x 64 x H/2 x W/2"),
    Stage("backbone.bn1", 1, "stem: frozen batch norm", "B x 64 x H/2 x W/2"),
    Stage("backbone.relu", 1, "stem: ReLU", "B x 64 x H/2 x W/2"),
    Stage("backbone.maxpool", 1, "stem: 3x3 max-pool, stride 2", "B x 64 x H/4 x W/4"),
    Stage("backbone.res2", 1, "Res2 = layer1 output, stride 4", "B x C2 x H/4 x W/4"),
    Stage("backbone.res3", 1, "Res3 = layer2 output, stride 8", "B x C3 x H/8 x W/8"),
    Stage("backbone.res4", 1, "Res4 = layer3 output, stride 16", "B x C4 x H/16 x W/16"),
    Stage("backbone.res5", 1, "Res5 = layer4 output, stride 32 (16 with DC5)", "B x C5 x h x w"),
    Stage("backbone.mask", 1, "padding mask resized to the res5 grid", "B x h x w"),
    Stage("input_proj", 1, "1x1 conv projecting Res5 to d channels (src_proj)", "B x d x h x w"),
    # step 2: encoder
    Stage("position", 2, "sine position encoding of the res5 grid (y: first d/2 channels, x: last d/2)",
          "B x d x h x w"),
    Stage("encoder.layer{i}.self_attn", 2, "encoder layer {i}: per-head self-attention weights",
          "B x M x hw x hw"),
    Stage("encoder.layer{i}", 2, "encoder layer {i} output", "hw x B x d"),
    Stage("memory", 2, "encoder output: the encoded image", "B x d x h x w"),
    # step 3: decoder
    Stage("decoder.query_embed", 3, "the N learned object queries (added as positions at every layer)",
          "N x d"),
    Stage("decoder.layer{i}.self_attn", 3, "decoder layer {i}: per-head self-attention among queries",
          "B x M x N x N"),
    Stage("decoder.layer{i}.cross_attn", 3, "decoder layer {i}: per-head cross-attention over the encoded image",
          "B x M x N x hw"),
    Stage("decoder.layer{i}", 3, "decoder layer {i} output (before the shared norm)", "N x B x d"),
    Stage("decoder.hs", 3, "normed output of every decoder layer; hs[-1] are the box embeddings",
          "L x B x N x d"),
    Stage("decoder.class_logits", 3, "class logits from every decoder layer (last = no object)",
          "L x B x N x (C+1)"),
    Stage("decoder.class_probs", 3, "softmax of the class logits, every decoder layer", "L x B x N x (C+1)"),
    Stage("decoder.boxes", 3, "boxes (cx, cy, w, h in [0,1]) from every decoder layer", "L x B x N x 4"),
    Stage("pred_logits", 3, "final class logits (last decoder layer)", "B x N x (C+1)"),
    Stage("pred_boxes", 3, "final boxes (last decoder layer)", "B x N x 4"),
    # step 4: box attention
    Stage("bbox_attention.q", 4, "queries of the box attention: q_linear(box embeddings)", "B x N x d"),
    Stage("bbox_attention", 4, "box attention maps, softmax jointly over heads and positions",
          "B x N x M x h x w"),
    # step 5: concat
    Stage("mask_head.concat", 5, "input_proj(Res5) repeated per query, stacked with its M maps",
          "K x (d+M) x h x w", per_query=True),
    # step 6: mask head
    Stage("mask_head.lay1", 6, "3x3 conv on the Res5 grid (h x w)", "K x (d+M) x h x w", True),
    Stage("mask_head.gn1", 6, "GroupNorm", "K x (d+M) x h x w", True),
    Stage("mask_head.relu1", 6, "ReLU", "K x (d+M) x h x w", True),
    Stage("mask_head.lay2", 6, "3x3 conv on the Res5 grid (h x w)", "K x d/2 x h x w", True),
    Stage("mask_head.gn2", 6, "GroupNorm", "K x d/2 x h x w", True),
    Stage("mask_head.relu2", 6, "ReLU", "K x d/2 x h x w", True),
    Stage("mask_head.adapter1", 6, "1x1 conv adapting Res4 (same for every query)", "B x d/2 x 2h x 2w"),
    Stage("mask_head.up1", 6, "nearest upsampling to the Res4 grid", "K x d/2 x 2h x 2w", True),
    Stage("mask_head.fpn1", 6, "upsampled path + adapted Res4", "K x d/2 x 2h x 2w", True),
    Stage("mask_head.lay3", 6, "3x3 conv at 1/16", "K x d/4 x 2h x 2w", True),
    Stage("mask_head.gn3", 6, "GroupNorm", "K x d/4 x 2h x 2w", True),
    Stage("mask_head.relu3", 6, "ReLU", "K x d/4 x 2h x 2w", True),
    Stage("mask_head.adapter2", 6, "1x1 conv adapting Res3 (same for every query)", "B x d/4 x 4h x 4w"),
    Stage("mask_head.up2", 6, "nearest upsampling to the Res3 grid", "K x d/4 x 4h x 4w", True),
    Stage("mask_head.fpn2", 6, "upsampled path + adapted Res3", "K x d/4 x 4h x 4w", True),
    Stage("mask_head.lay4", 6, "3x3 conv at 1/8", "K x d/8 x 4h x 4w", True),
    Stage("mask_head.gn4", 6, "GroupNorm", "K x d/8 x 4h x 4w", True),
    Stage("mask_head.relu4", 6, "ReLU", "K x d/8 x 4h x 4w", True),
    Stage("mask_head.adapter3", 6, "1x1 conv adapting Res2 (same for every query)", "B x d/8 x 8h x 8w"),
    Stage("mask_head.up3", 6, "nearest upsampling to the Res2 grid", "K x d/8 x 8h x 8w", True),
    Stage("mask_head.fpn3", 6, "upsampled path + adapted Res2", "K x d/8 x 8h x 8w", True),
    Stage("mask_head.lay5", 6, "3x3 conv at 1/4", "K x d/16 x H/4 x W/4", True),
    Stage("mask_head.gn5", 6, "GroupNorm", "K x d/16 x H/4 x W/4", True),
    Stage("mask_head.relu5", 6, "ReLU", "K x d/16 x H/4 x W/4", True),
    Stage("mask_head.out_lay", 6, "3x3 conv to one channel: mask logits", "K x 1 x H/4 x W/4", True),
    Stage("pred_masks", 6, "mask logits of the traced queries", "B x K x H/4 x W/4", True),
)

_TEMPLATES = {s.name: s for s in STAGES}
_PATTERNS = [(re.compile("^" + re.escape(s.name).replace(r"\{i\}", r"(\d+)") + "$"), s)
             for s in STAGES if "{i}" in s.name]


def stage_names(config=None, enc_layers: int = 6, dec_layers: int = 6) -> list[str]:
    """All stage names in pipeline order, with layer templates expanded for `config`."""
    if config is not None:
        enc_layers, dec_layers = config.enc_layers, config.dec_layers
    names = []
    for s in STAGES:
        if s.name.startswith("encoder.layer{i}"):
            names += [s.name.format(i=i) for i in range(enc_layers)]
        elif s.name.startswith("decoder.layer{i}"):
            names += [s.name.format(i=i) for i in range(dec_layers)]
        else:
            names.append(s.name)
    # Interleave per-layer stages layer by layer (layer i's attention, then its output).
    return _interleave(names)


def _interleave(names: list[str]) -> list[str]:
    def key(pos_name):
        pos, name = pos_name
        m = re.match(r"^(encoder|decoder)\.layer(\d+)", name)
        if not m:
            return (pos, 0, 0)
        first = min(p for p, n in enumerate(names) if n.startswith(m.group(1) + ".layer"))
        return (first, int(m.group(2)), pos)
    return [n for _, n in sorted(enumerate(names), key=key)]


def stage(name: str) -> Stage:
    """The Stage record for a concrete name (e.g. 'encoder.layer3.self_attn'), layer filled in."""
    if name in _TEMPLATES:
        return _TEMPLATES[name]
    for pattern, s in _PATTERNS:
        m = pattern.match(name)
        if m:
            i = m.group(1)
            return Stage(name, s.step, s.description.format(i=i), s.shape, s.per_query)
    raise KeyError(f"unknown stage {name!r}")


def step(number: int) -> Step:
    return STEPS[number - 1]


def stages_of_step(number: int, config=None) -> list[str]:
    return [n for n in stage_names(config) if stage(n).step == number]
