"""The DETR detector: backbone -> input_proj -> transformer -> class and box heads."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import Backbone, Joiner
from .config import DETRConfig
from .position import PositionEmbeddingSine
from .transformer import Transformer


class MLP(nn.Module):
    """Linear layers with ReLU between them (the box head: d -> d -> d -> 4)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int):
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims, dims[1:] + [output_dim]))

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


@dataclass
class Detection:
    """Everything the mask branch needs, plus the detector's predictions for every decoder layer."""
    features: list          # [res2, res3, res4, res5]: (B, C_k, H/2^k, W/2^k)
    mask: torch.Tensor      # (B, h, w) bool, True = padding, at the res5 grid
    pos: torch.Tensor       # (B, d, h, w) sine position encoding
    src_proj: torch.Tensor  # (B, d, h, w) input_proj(res5)
    memory: torch.Tensor    # (B, d, h, w) encoder output, "the encoded image"
    hs: torch.Tensor        # (L, B, N, d) normed decoder outputs, "box embeddings" = hs[-1]
    class_logits: torch.Tensor  # (L, B, N, num_classes + 1)
    boxes: torch.Tensor     # (L, B, N, 4) (cx, cy, w, h) in [0, 1]

    @property
    def pred_logits(self):
        return self.class_logits[-1]                        # (B, N, num_classes + 1)

    @property
    def pred_boxes(self):
        return self.boxes[-1]                               # (B, N, 4)


class DETR(nn.Module):
    def __init__(self, cfg: DETRConfig):
        super().__init__()
        d = cfg.hidden_dim
        self.num_queries = cfg.num_queries
        self.transformer = Transformer(cfg)
        self.class_embed = nn.Linear(d, cfg.num_classes + 1)
        self.bbox_embed = MLP(d, d, 4, 3)
        self.query_embed = nn.Embedding(cfg.num_queries, d)
        self.input_proj = nn.Conv2d(cfg.backbone_channels[-1], d, kernel_size=1)
        self.backbone = Joiner(Backbone(cfg), PositionEmbeddingSine(d // 2))

    def forward(self, images, mask) -> Detection:           # images: (B, 3, H, W), mask: (B, H, W)
        features, masks, pos = self.backbone(images, mask)
        src_proj = self.input_proj(features[-1])            # (B, 2048, h, w) -> (B, d, h, w)
        hs, memory = self.transformer(src_proj, masks[-1], self.query_embed.weight, pos)
        class_logits = self.class_embed(hs)                 # (L, B, N, C+1)
        boxes = self.bbox_embed(hs).sigmoid()               # (L, B, N, 4)
        return Detection(features, masks[-1], pos, src_proj, memory, hs, class_logits, boxes)
