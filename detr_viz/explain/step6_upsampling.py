"""Step 6, the FPN-style mask head, taken apart for teaching (pages/6_Upsampling.py).

The mask head (MaskHeadSmallConv) turns one query's (d+M) x h x w stack into one mask-logit map at
1/4 of the input, in four resolutions:

    1/32: lay1, lay2     3x3 conv -> GroupNorm(8, C) -> ReLU, twice              (K, d/2, h, w)
    1/16: up1 + adapter1(res4) -> lay3 (conv, GN, ReLU)                            (K, d/4, 2h, 2w)
    1/8:  up2 + adapter2(res3) -> lay4                                             (K, d/8, 4h, 4w)
    1/4:  up3 + adapter3(res2) -> lay5 -> out_lay (3x3 conv to 1 channel: logits)  (K, 1, 8h, 8w)

up{k} is a nearest-neighbour upsampling to the skip's exact size (ceil of the input size / stride,
so not always exactly x2), adapter{k} a 1x1 conv of the backbone feature (the same for every query).
Every view here is a linear function of the tensors, so "upsampled + skip = sum" holds exactly in
the pictures too.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from ..cache import cached
from ..viz import DIVERGING, SEQUENTIAL, fit_width, heatmap, load_font, size_at_width, to_numpy
from .common import shape_str

RES_OF_ADAPTER = {1: "Res4", 2: "Res3", 3: "Res2"}


QUERIES_KEEP = 12               # views and pictures kept per trace: the last few queries

def fraction(trace, name: str) -> str:
    """Resolution of a stage relative to the network input, as '1/32' (power of two nearest to the
    ratio; odd sizes round up, e.g. 1066 px -> 34 cells)."""
    H = trace.shape("input")[-2]
    h = trace.shape(name)[-2]
    return f"1/{2 ** int(round(np.log2(H / h)))}"


def size_note(src, dst) -> str:
    """How an up{k} step changes the grid, in words."""
    if tuple(src) == tuple(dst):
        return "the same size: with a dilated Res5 (DC5) there is nothing to upsample here"
    if tuple(dst) == (2 * src[0], 2 * src[1]):
        return "exactly ×2"
    return "not exactly ×2: odd sizes round up in the backbone"


@cached
def channel_plan(trace) -> list[dict]:
    """One row per operation of the mask head: resolution, operation, channels in -> out, norm and
    the live shape of one query's output, read from the model's modules and the trace."""
    mh = trace.model.mask_head
    rows = []

    def conv_row(k, what):
        conv, gn = getattr(mh, f"lay{k}"), getattr(mh, f"gn{k}")
        name = f"mask_head.relu{k}"
        rows.append({"stage": f"lay{k} → gn{k} → relu{k}", "resolution": fraction(trace, name),
                     "operation": f"{conv.kernel_size[0]}x{conv.kernel_size[1]} conv → GroupNorm({gn.num_groups}, "
                                  f"{gn.num_channels}) → ReLU" + (f" ({what})" if what else ""),
                     "channels": f"{conv.in_channels} → {conv.out_channels}",
                     "shape (one query)": shape_str(trace.shape(name)[1:])})

    def skip_row(k):
        ad = getattr(mh, f"adapter{k}")
        up_from = trace.shape(f"mask_head.relu{k + 1}")
        rows.append({"stage": f"adapter{k}({RES_OF_ADAPTER[k]}) + up{k} = fpn{k}",
                     "resolution": fraction(trace, f"mask_head.fpn{k}"),
                     "operation": f"1x1 conv on {RES_OF_ADAPTER[k]} ({ad.in_channels} → {ad.out_channels}) + "
                                  f"nearest upsampling {shape_str(up_from[-2:])} → {shape_str(trace.shape(f'mask_head.fpn{k}')[-2:])}",
                     "channels": f"{ad.out_channels} + {up_from[1]} → {ad.out_channels} (added, not stacked)",
                     "shape (one query)": shape_str(trace.shape(f"mask_head.fpn{k}")[1:])})

    d, M = trace.config.hidden_dim, trace.config.nheads
    rows.append({"stage": "concat", "resolution": fraction(trace, "mask_head.concat"),
                 "operation": f"input_proj(Res5) ({d} ch) stacked with the query's {M} attention maps (page 5)",
                 "channels": f"{d} + {M} = {d + M}",
                 "shape (one query)": shape_str(trace.shape("mask_head.concat")[1:])})
    conv_row(1, "")
    conv_row(2, "")
    skip_row(1)
    conv_row(3, "")
    skip_row(2)
    conv_row(4, "")
    skip_row(3)
    conv_row(5, "")
    out = mh.out_lay
    rows.append({"stage": "out_lay", "resolution": fraction(trace, "mask_head.out_lay"),
                 "operation": f"{out.kernel_size[0]}x{out.kernel_size[1]} conv to one channel, no norm, "
                              "no ReLU: the mask logits",
                 "channels": f"{out.in_channels} → {out.out_channels}",
                 "shape (one query)": shape_str(trace.shape("mask_head.out_lay")[1:])})
    return rows


# ---------------------------------------------------------------------------------------------
# linear views of a (C, H, W) tensor
# ---------------------------------------------------------------------------------------------
def first_component(x: np.ndarray) -> np.ndarray:
    """(C,) unit vector: the first principal direction of the C-channel vectors of (C, H, W) x."""
    C = x.shape[0]
    if C == 1:
        return np.ones(1)
    flat = torch.as_tensor(x, dtype=torch.float32).reshape(C, -1)            # (C, HW)
    flat = flat - flat.mean(1, keepdim=True)
    _, vecs = torch.linalg.eigh((flat @ flat.T).double())                    # (C, C), ascending
    return vecs[:, -1].numpy()


def resize_to(values: np.ndarray, hw) -> np.ndarray:
    """(H, W) -> hw by area averaging (down) or bilinear (up): to compare maps of different grids."""
    t = torch.as_tensor(values, dtype=torch.float32)[None, None]
    if t.shape[-2] >= hw[0] and t.shape[-1] >= hw[1]:
        return F.adaptive_avg_pool2d(t, hw)[0, 0].numpy()
    return F.interpolate(t, size=tuple(hw), mode="bilinear", align_corners=False)[0, 0].numpy()


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    a, b = a - a.mean(), b - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else 0.0


@cached(keep=QUERIES_KEEP)
def mask_logits(trace, q: int) -> np.ndarray:
    """(h4, w4) the query's mask logits (pred_masks row = out_lay output)."""
    return to_numpy(trace.query("pred_masks", q)[0])


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


def project(x: np.ndarray, view, direction: np.ndarray | None = None) -> np.ndarray:
    """A linear 2-D view of (C, H, W) x: 'mean' (channel mean), an int (one channel), or 'pc1'
    (projection on `direction`, no centring, so it stays linear: view(a + b) = view(a) + view(b))."""
    if view == "mean":
        return x.mean(0)
    if isinstance(view, (int, np.integer)):
        return x[int(view)]
    return np.tensordot(direction, x, axes=(0, 0))


@dataclass
class FPNLevel:
    """One skip stage for one query: the upsampled path, the adapted backbone skip and their sum."""
    k: int
    query: int
    resolution: str             # '1/16', '1/8', '1/4'
    backbone: str               # 'Res4', 'Res3', 'Res2'
    view: object                # 'pc1', 'mean' or a channel index
    up: np.ndarray              # (H, W) view of mask_head.up{k}[q]
    skip: np.ndarray            # (H, W) view of mask_head.adapter{k} (same for every query)
    total: np.ndarray           # (H, W) view of mask_head.fpn{k}[q]
    max_sum_error: float        # max |up + adapter - fpn| over the full tensors (0: it is the sum)
    shapes: dict                # stage -> live shape
    from_hw: tuple              # grid before the upsampling
    channels: int


@cached(keep=QUERIES_KEEP)
def fpn_level(trace, q: int, k: int, view="pc1") -> FPNLevel:
    up = to_numpy(trace.query(f"mask_head.up{k}", q))                       # (C, H, W)
    skip = to_numpy(trace[f"mask_head.adapter{k}"][0])                       # (C, H, W) same for all queries
    total = to_numpy(trace.query(f"mask_head.fpn{k}", q))                    # (C, H, W)
    direction = None
    if view == "pc1":
        direction = first_component(total)
        final = resize_to(mask_logits(trace, q), total.shape[-2:])
        if correlation(project(total, view, direction), final) < 0:          # orient: + = towards the mask
            direction = -direction
    names = [f"mask_head.relu{k + 1}", f"mask_head.up{k}", f"mask_head.adapter{k}", f"mask_head.fpn{k}"]
    return FPNLevel(k=k, query=int(q), resolution=fraction(trace, f"mask_head.fpn{k}"), backbone=RES_OF_ADAPTER[k],
                    view=view, up=project(up, view, direction), skip=project(skip, view, direction),
                    total=project(total, view, direction),
                    max_sum_error=float(np.abs(up + skip - total).max()),
                    shapes={n: trace.shape(n) for n in names},
                    from_hw=tuple(trace.shape(f"mask_head.relu{k + 1}")[-2:]), channels=int(total.shape[0]))


def fpn_picture(level: FPNLevel, tile: int = 300) -> Image.Image:
    """up  +  skip  =  sum, on ONE symmetric diverging scale (so the sum can be read off)."""
    size = size_at_width(level.total.shape, tile)
    a = max(float(np.abs(np.stack([level.up, level.skip, level.total])).max()), 1e-12)
    tiles = [heatmap(v, size, DIVERGING, vmin=-a, vmax=a) for v in (level.up, level.skip, level.total)]
    labels = [f"up{level.k}: query {level.query}, upsampled", f"adapter{level.k}({level.backbone}): every query",
              f"fpn{level.k}: the sum"]
    gap, top = 44, 30
    out = Image.new("RGB", (3 * size[0] + 2 * gap + 8, size[1] + top + 6), (255, 255, 255))
    draw = ImageDraw.Draw(out)
    font, big = load_font(16), load_font(32)
    for i, (t, lab) in enumerate(zip(tiles, labels)):
        x = 4 + i * (size[0] + gap)
        out.paste(t, (x, top))
        draw.text((x, 6), lab, fill=(20, 20, 20), font=font)
        if i < 2:
            draw.text((x + size[0] + 10, top + size[1] // 2 - 20), "+" if i == 0 else "=", fill=(20, 20, 20), font=big)
    return out


@dataclass
class SharpStage:
    name: str                   # stage name in the trace
    title: str                  # short label
    resolution: str
    hw: tuple
    channels: int
    values: np.ndarray          # (H, W) the view drawn
    corr: float                 # correlation with the final mask logits (at this grid)
    kind: str                   # 'pc1', 'attention' or 'logits'


@cached(keep=QUERIES_KEEP)
def sharpening(trace, q: int, d: int | None = None) -> list[SharpStage]:
    """The mask taking shape: the query's attention (sum of its M maps, the only per-query input),
    then the first principal component after each resolution's conv block (oriented so that + means
    'towards the mask'), then the mask logits; each with its correlation with the final logits."""
    final = mask_logits(trace, q)                                            # (h4, w4)
    d = trace.config.hidden_dim if d is None else d
    out = []
    att = to_numpy(trace.query("mask_head.concat", q)[d:]).sum(0)            # (h, w)
    out.append(SharpStage("mask_head.concat", "attention: sum of the M maps", fraction(trace, "mask_head.concat"),
                          att.shape, int(trace.shape("mask_head.concat")[1] - d), att,
                          correlation(att, resize_to(final, att.shape)), "attention"))
    titles = {2: "after lay1, lay2", 3: "after + Res4, lay3", 4: "after + Res3, lay4", 5: "after + Res2, lay5"}
    for k in (2, 3, 4, 5):
        name = f"mask_head.relu{k}"
        x = to_numpy(trace.query(name, q))                                   # (C, H, W)
        v = project(x - x.reshape(x.shape[0], -1).mean(1)[:, None, None], "pc1", first_component(x))
        ref = resize_to(final, v.shape)
        r = correlation(v, ref)
        if r < 0:
            v, r = -v, -r
        out.append(SharpStage(name, titles[k], fraction(trace, name), v.shape, int(x.shape[0]), v, r, "pc1"))
    out.append(SharpStage("pred_masks", "mask logits (out_lay)", fraction(trace, "mask_head.out_lay"), final.shape,
                          1, final, 1.0, "logits"))
    return out


def sharpening_picture(stages: list[SharpStage], tile: int = 320, ncols: int = 3) -> Image.Image:
    """All stages at the same display size (nearest: each stage's cells stay visible), `ncols` a row."""
    size = size_at_width(stages[-1].hw, tile)
    top, bottom, pad = 26, 48, 12
    nrows = int(np.ceil(len(stages) / ncols))
    out = Image.new("RGB", (ncols * (size[0] + pad) + pad, nrows * (size[1] + top + bottom)), (255, 255, 255))
    draw = ImageDraw.Draw(out)
    font = load_font(16)
    for i, s in enumerate(stages):
        r, c = divmod(i, ncols)
        x, y = pad + c * (size[0] + pad), r * (size[1] + top + bottom) + 4
        if s.kind == "attention":
            t = heatmap(s.values, size, SEQUENTIAL, vmin=0.0)
        else:
            t = heatmap(s.values, size, DIVERGING, symmetric=True)
        draw.text((x, y), f"{i + 1}. {s.resolution}: {shape_str(s.hw)}, {s.channels} ch", fill=(20, 20, 20),
                  font=font)
        out.paste(t, (x, y + top - 4))
        draw.text((x, y + top + size[1] - 2), s.title, fill=(40, 40, 40), font=font)
        if s.kind != "logits":
            draw.text((x, y + top + size[1] + 18), f"correlation with the final logits: {s.corr:+.2f}",
                      fill=(90, 90, 90), font=font)
    return out


def logits_picture(logits: np.ndarray, width: int = 480) -> Image.Image:
    return heatmap(logits, size_at_width(logits.shape, width), DIVERGING, symmetric=True)


def sigmoid_picture(logits: np.ndarray, width: int = 480) -> Image.Image:
    return heatmap(sigmoid(logits), size_at_width(logits.shape, width), SEQUENTIAL, vmin=0.0, vmax=1.0)


def mask_overlay(logits: np.ndarray, image: Image.Image, width: int = 480, alpha: float = 0.6) -> Image.Image:
    """sigmoid(logits) over the photo. The mask grid covers the (un-padded) network input, which is
    the photo resized, so it is stretched to the photo as the merge does."""
    photo = fit_width(image.convert("RGB"), width)
    heat = heatmap(sigmoid(logits), photo.size, SEQUENTIAL, vmin=0.0, vmax=1.0)
    return Image.blend(photo, heat, alpha)


def logit_range(logits: np.ndarray) -> dict:
    p = sigmoid(logits)
    return {"min": float(logits.min()), "max": float(logits.max()), "share_positive": float((logits > 0).mean()),
            "p_min": float(p.min()), "p_max": float(p.max())}


# ---- what the page draws, cached per trace (the last QUERIES_KEEP queries) ----------------------------
@cached(keep=QUERIES_KEEP)
def sharpening_picture_of(trace, q: int) -> Image.Image:
    return sharpening_picture(sharpening(trace, q))


@cached(keep=QUERIES_KEEP)
def fpn_picture_of(trace, q: int, k: int, view="pc1") -> Image.Image:
    return fpn_picture(fpn_level(trace, q, k, view))


@cached(keep=QUERIES_KEEP)
def logits_picture_of(trace, q: int) -> Image.Image:
    return logits_picture(mask_logits(trace, q))


@cached(keep=QUERIES_KEEP)
def sigmoid_picture_of(trace, q: int) -> Image.Image:
    return sigmoid_picture(mask_logits(trace, q))


@cached(keep=QUERIES_KEEP)
def mask_overlay_of(trace, q: int) -> Image.Image:
    """sigmoid(query q's mask logits) over the photo."""
    return mask_overlay(mask_logits(trace, q), trace.image)
