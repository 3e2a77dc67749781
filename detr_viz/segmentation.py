"""The panoptic branch: box attention maps and the FPN-style mask head, and the full model.

`DETRPanoptic.forward(images)` returns exactly what the official `DETRsegm` returns. The forward
is split in three calls (`detect`, `attention_maps`, `mask_logits`) so a tracer can run the mask
head for a chosen subset of queries: each query's mask is computed independently (GroupNorm
normalises each sample on its own), so a subset gives the same logits as the full batch.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import DETRConfig
from .detr import DETR, Detection


class Tap(nn.Module):
    """Identity with a name: marks a functional step (concat, FPN sum) so hooks can see it."""

    def forward(self, x):
        return x


class UpsampleTo(nn.Module):
    """Nearest-neighbour upsampling of x to the spatial size of a skip connection."""

    def forward(self, x, size):
        return F.interpolate(x, size=size, mode="nearest")


class MHAttentionMap(nn.Module):
    """Attention weights of each box embedding over the encoded image; no values, no output proj.

    The softmax runs jointly over heads and positions: the M maps of one query sum to 1.
    """

    def __init__(self, query_dim: int, hidden_dim: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        self.num_heads = num_heads
        self.hidden_dim = hidden_dim
        self.dropout = nn.Dropout(dropout)
        self.q_linear = nn.Linear(query_dim, hidden_dim)
        self.k_linear = nn.Linear(query_dim, hidden_dim)
        for lin in (self.q_linear, self.k_linear):
            nn.init.zeros_(lin.bias)
            nn.init.xavier_uniform_(lin.weight)
        self.normalize_fact = float(hidden_dim / num_heads) ** -0.5

    def forward(self, q, k, mask=None):                     # q: (B, N, d), k: (B, d, h, w), mask: (B, h, w)
        M, c = self.num_heads, self.hidden_dim // self.num_heads
        q = self.q_linear(q)                                # (B, N, d)
        k = F.conv2d(k, self.k_linear.weight[:, :, None, None], self.k_linear.bias)   # (B, d, h, w)
        qh = q.view(q.shape[0], q.shape[1], M, c)           # (B, N, M, d/M)
        kh = k.view(k.shape[0], M, c, k.shape[-2], k.shape[-1])   # (B, M, d/M, h, w)
        weights = torch.einsum("bqnc,bnchw->bqnhw", qh * self.normalize_fact, kh)   # (B, N, M, h, w)
        if mask is not None:
            weights = weights.masked_fill(mask[:, None, None], float("-inf"))
        weights = F.softmax(weights.flatten(2), dim=-1).view(weights.shape)   # joint over M*h*w
        return self.dropout(weights)                        # (B, N, M, h, w)


class MaskHead(nn.Module):
    """MaskHeadSmallConv: three 3x3 conv stages upsampled with FPN skips from res4, res3, res2.

    Widths for d=256, M=8: 264 -> 264 -> 128 -> (+res4) 64 -> (+res3) 32 -> (+res2) 16 -> 1.
    """

    def __init__(self, dim: int, fpn_dims, context_dim: int, attention_scale: float = 1.0):
        super().__init__()
        w = [dim, context_dim // 2, context_dim // 4, context_dim // 8, context_dim // 16]
        self.attention_scale = attention_scale
        self.lay1 = nn.Conv2d(dim, dim, 3, padding=1)
        self.gn1 = nn.GroupNorm(8, dim)
        self.lay2 = nn.Conv2d(dim, w[1], 3, padding=1)
        self.gn2 = nn.GroupNorm(8, w[1])
        self.lay3 = nn.Conv2d(w[1], w[2], 3, padding=1)
        self.gn3 = nn.GroupNorm(8, w[2])
        self.lay4 = nn.Conv2d(w[2], w[3], 3, padding=1)
        self.gn4 = nn.GroupNorm(8, w[3])
        self.lay5 = nn.Conv2d(w[3], w[4], 3, padding=1)
        self.gn5 = nn.GroupNorm(8, w[4])
        self.out_lay = nn.Conv2d(w[4], 1, 3, padding=1)
        self.adapter1 = nn.Conv2d(fpn_dims[0], w[1], 1)
        self.adapter2 = nn.Conv2d(fpn_dims[1], w[2], 1)
        self.adapter3 = nn.Conv2d(fpn_dims[2], w[3], 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, a=1)
                nn.init.constant_(m.bias, 0)
        # Parameter-free steps, as modules so that hooks can capture them (no state-dict keys).
        self.concat = Tap()
        self.relu1, self.relu2, self.relu3, self.relu4, self.relu5 = (nn.ReLU() for _ in range(5))
        self.up1, self.up2, self.up3 = UpsampleTo(), UpsampleTo(), UpsampleTo()
        self.fpn1, self.fpn2, self.fpn3 = Tap(), Tap(), Tap()

    def _skip(self, x, adapter, up, tap, fpn):
        """x: (B*K, C, s, s') at one level; fpn: (B, C_res, 2s, 2s') backbone skip."""
        skip = adapter(fpn)                                 # (B, C, 2s, 2s')
        x = up(x, skip.shape[-2:])                          # (B*K, C, 2s, 2s')
        B = skip.shape[0]
        x = x.view(B, -1, *x.shape[1:]) + skip[:, None]     # (B, K, C, 2s, 2s'): same skip for every query
        return tap(x.flatten(0, 1))                         # (B*K, C, 2s, 2s')

    def forward(self, src_proj, bbox_mask, fpns):
        """src_proj: (B, d, h, w); bbox_mask: (B, K, M, h, w); fpns: [res4, res3, res2]."""
        B, K = bbox_mask.shape[:2]
        x = torch.cat([src_proj.repeat_interleave(K, dim=0),           # (B*K, d, h, w) same for every query
                       bbox_mask.flatten(0, 1) * self.attention_scale],  # (B*K, M, h, w)
                      dim=1)
        x = self.concat(x)                                  # (B*K, d+M, h, w)
        x = self.relu1(self.gn1(self.lay1(x)))              # (B*K, d+M, h, w)
        x = self.relu2(self.gn2(self.lay2(x)))              # (B*K, d/2, h, w)
        x = self._skip(x, self.adapter1, self.up1, self.fpn1, fpns[0])   # (B*K, d/2, 2h, 2w)  + res4
        x = self.relu3(self.gn3(self.lay3(x)))              # (B*K, d/4, 2h, 2w)
        x = self._skip(x, self.adapter2, self.up2, self.fpn2, fpns[1])   # (B*K, d/4, 4h, 4w)  + res3
        x = self.relu4(self.gn4(self.lay4(x)))              # (B*K, d/8, 4h, 4w)
        x = self._skip(x, self.adapter3, self.up3, self.fpn3, fpns[2])   # (B*K, d/8, 8h, 8w)  + res2
        x = self.relu5(self.gn5(self.lay5(x)))              # (B*K, d/16, 8h, 8w)
        return self.out_lay(x)                              # (B*K, 1, H/4, W/4) mask logits


def pad_batch(images) -> tuple[torch.Tensor, torch.Tensor]:
    """A list of (3, H_i, W_i) tensors -> (B, 3, H, W) zero-padded batch and (B, H, W) mask, True = pad."""
    if not images:
        raise ValueError("an empty list of images")
    H = max(int(im.shape[-2]) for im in images)
    W = max(int(im.shape[-1]) for im in images)
    batch = images[0].new_zeros((len(images), images[0].shape[0], H, W))       # (B, 3, H, W)
    mask = torch.ones((len(images), H, W), dtype=torch.bool, device=images[0].device)
    for b, im in enumerate(images):
        batch[b, :, : im.shape[-2], : im.shape[-1]] = im
        mask[b, : im.shape[-2], : im.shape[-1]] = False
    return batch, mask


class DETRPanoptic(nn.Module):
    """DETR + box attention + mask head (the official `DETRsegm`)."""

    def __init__(self, cfg: DETRConfig):
        super().__init__()
        self.config = cfg
        d, M = cfg.hidden_dim, cfg.nheads
        self.detr = DETR(cfg)
        self.bbox_attention = MHAttentionMap(d, d, M, dropout=0.0)
        self.mask_head = MaskHead(d + M, cfg.fpn_dims, d, attention_scale=cfg.bbox_attention_scale)

    def detect(self, images, mask=None) -> Detection:
        """Backbone, transformer and heads. images: (B, 3, H, W) normalised; mask: (B, H, W), True = pad.

        images may also be a list of (3, H_i, W_i) tensors of different sizes: they are padded with
        zeros to the largest height and width, and the padding is masked (as the official
        nested_tensor_from_tensor_list)."""
        if isinstance(images, (list, tuple)):
            images, mask = pad_batch(images)
        if mask is None:
            mask = torch.zeros(images.shape[0], *images.shape[-2:], dtype=torch.bool, device=images.device)
        return self.detr(images, mask)

    def attention_maps(self, det: Detection, queries=None):
        """Box attention maps of the last decoder layer's embeddings: (B, K, M, h, w)."""
        hs = det.hs[-1]                                     # (B, N, d) box embeddings
        if queries is not None:
            hs = hs[:, torch.as_tensor(queries, dtype=torch.long, device=hs.device)]   # (B, K, d)
        return self.bbox_attention(hs, det.memory, mask=det.mask)

    def mask_logits(self, det: Detection, bbox_mask):
        """Mask logits at the res2 grid for the queries whose maps are given: (B, K, H/4, W/4)."""
        res2, res3, res4, _ = det.features
        seg = self.mask_head(det.src_proj, bbox_mask, [res4, res3, res2])   # (B*K, 1, H/4, W/4)
        return seg.view(bbox_mask.shape[0], bbox_mask.shape[1], *seg.shape[-2:])

    def forward(self, images, mask=None):
        det = self.detect(images, mask)
        masks = self.mask_logits(det, self.attention_maps(det))
        return {"pred_logits": det.pred_logits, "pred_boxes": det.pred_boxes, "pred_masks": masks}
