"""Sine position encoding of the res5 grid (DETR's PositionEmbeddingSine, normalize=True)."""
from __future__ import annotations

import math

import torch
from torch import nn


class PositionEmbeddingSine(nn.Module):
    """Channels 0..d/2-1 encode y, d/2..d-1 encode x; within each, even = sin, odd = cos."""

    def __init__(self, num_pos_feats: int = 128, temperature: float = 10000.0, scale: float = 2 * math.pi):
        super().__init__()
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self.scale = scale

    def forward(self, mask):                                # (B, h, w) bool, True = padding
        not_mask = ~mask
        y = not_mask.cumsum(1, dtype=torch.float32)         # (B, h, w) row number among valid pixels
        x = not_mask.cumsum(2, dtype=torch.float32)
        eps = 1e-6
        y = y / (y[:, -1:, :] + eps) * self.scale           # 0..2pi over the valid height
        x = x / (x[:, :, -1:] + eps) * self.scale
        i = torch.arange(self.num_pos_feats, dtype=torch.float32, device=mask.device)
        freq = self.temperature ** (2 * (i // 2) / self.num_pos_feats)   # (d/2,)
        px = x[..., None] / freq                            # (B, h, w, d/2)
        py = y[..., None] / freq
        px = torch.stack((px[..., 0::2].sin(), px[..., 1::2].cos()), dim=4).flatten(3)
        py = torch.stack((py[..., 0::2].sin(), py[..., 1::2].cos()), dim=4).flatten(3)
        return torch.cat((py, px), dim=3).permute(0, 3, 1, 2)   # (B, d, h, w)
