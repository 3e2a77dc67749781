"""DETR's post-norm transformer: encoder over the res5 grid, decoder over N object queries.

Layout is sequence-first, (S, B, d), as in the official code. Attention modules are plain
`nn.MultiheadAttention` called with their defaults, as the official code does (so the same kernels
run and the numbers agree to the last bit); a tracer asks for per-head weights with a forward
pre-hook, which changes only the weights returned, not the attention output.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import DETRConfig


class EncoderLayer(nn.Module):
    def __init__(self, d: int, nheads: int, ffn: int, dropout: float):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d, nheads, dropout=dropout)
        self.linear1 = nn.Linear(d, ffn)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(ffn, d)
        self.norm1 = nn.LayerNorm(d)
        self.norm2 = nn.LayerNorm(d)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def forward(self, src, pos, key_padding_mask):          # src, pos: (HW, B, d)
        q = k = src + pos                                   # positions go into q and k, not v
        attn = self.self_attn(q, k, value=src, key_padding_mask=key_padding_mask)[0]
        src = self.norm1(src + self.dropout1(attn))
        ff = self.linear2(self.dropout(F.relu(self.linear1(src))))
        return self.norm2(src + self.dropout2(ff))          # (HW, B, d)


class DecoderLayer(nn.Module):
    def __init__(self, d: int, nheads: int, ffn: int, dropout: float):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d, nheads, dropout=dropout)
        self.multihead_attn = nn.MultiheadAttention(d, nheads, dropout=dropout)   # cross-attention
        self.linear1 = nn.Linear(d, ffn)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(ffn, d)
        self.norm1 = nn.LayerNorm(d)
        self.norm2 = nn.LayerNorm(d)
        self.norm3 = nn.LayerNorm(d)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)

    def forward(self, tgt, memory, pos, query_pos, key_padding_mask):   # tgt: (N, B, d), memory: (HW, B, d)
        q = k = tgt + query_pos
        attn = self.self_attn(q, k, value=tgt)[0]
        tgt = self.norm1(tgt + self.dropout1(attn))
        attn = self.multihead_attn(query=tgt + query_pos, key=memory + pos, value=memory,
                                   key_padding_mask=key_padding_mask)[0]
        tgt = self.norm2(tgt + self.dropout2(attn))
        ff = self.linear2(self.dropout(F.relu(self.linear1(tgt))))
        return self.norm3(tgt + self.dropout3(ff))          # (N, B, d)


class Encoder(nn.Module):
    def __init__(self, cfg: DETRConfig):
        super().__init__()
        self.layers = nn.ModuleList(
            EncoderLayer(cfg.hidden_dim, cfg.nheads, cfg.dim_feedforward, cfg.dropout)
            for _ in range(cfg.enc_layers))

    def forward(self, src, pos, key_padding_mask):
        for layer in self.layers:
            src = layer(src, pos, key_padding_mask)
        return src                                          # (HW, B, d); post-norm: no final norm


class Decoder(nn.Module):
    def __init__(self, cfg: DETRConfig):
        super().__init__()
        self.layers = nn.ModuleList(
            DecoderLayer(cfg.hidden_dim, cfg.nheads, cfg.dim_feedforward, cfg.dropout)
            for _ in range(cfg.dec_layers))
        self.norm = nn.LayerNorm(cfg.hidden_dim)

    def forward(self, tgt, memory, pos, query_pos, key_padding_mask):
        out = []
        for layer in self.layers:
            tgt = layer(tgt, memory, pos, query_pos, key_padding_mask)
            out.append(self.norm(tgt))                      # every layer's output goes through the shared norm
        return torch.stack(out)                             # (L, N, B, d)


class Transformer(nn.Module):
    def __init__(self, cfg: DETRConfig):
        super().__init__()
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.d_model = cfg.hidden_dim
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self, src, mask, query_embed, pos):
        """src, pos: (B, d, h, w); mask: (B, h, w); query_embed: (N, d).
        Returns hs (L, B, N, d) and memory (B, d, h, w)."""
        B, d, h, w = src.shape
        src = src.flatten(2).permute(2, 0, 1)               # (HW, B, d)
        pos = pos.flatten(2).permute(2, 0, 1)               # (HW, B, d)
        query_pos = query_embed.unsqueeze(1).repeat(1, B, 1)   # (N, B, d)
        mask = mask.flatten(1)                              # (B, HW)
        tgt = torch.zeros_like(query_pos)                   # queries start at zero; query_embed is a positional term
        memory = self.encoder(src, pos, mask)               # (HW, B, d)
        hs = self.decoder(tgt, memory, pos, query_pos, mask)   # (L, N, B, d)
        return hs.transpose(1, 2), memory.permute(1, 2, 0).reshape(B, d, h, w)
