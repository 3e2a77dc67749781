"""CNN backbone: a torchvision ResNet with frozen BatchNorm, returning res2..res5.

State-dict names follow the official code: `backbone.0.body.{conv1,bn1,layer1..4}` (the
`Joiner` is an `nn.Sequential` whose index 0 is the backbone and index 1 the position encoding).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet as tv_resnet

from .config import DETRConfig
from .position import PositionEmbeddingSine


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm2d with fixed statistics and affine parameters, all stored as buffers."""

    def __init__(self, n: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(n))
        self.register_buffer("bias", torch.zeros(n))
        self.register_buffer("running_mean", torch.zeros(n))
        self.register_buffer("running_var", torch.ones(n))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # A checkpoint of a trainable BatchNorm carries this counter; it means nothing here.
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x):
        scale = self.weight * (self.running_var + self.eps).rsqrt()   # (C,)
        shift = self.bias - self.running_mean * scale                  # (C,)
        return x * scale.reshape(1, -1, 1, 1) + shift.reshape(1, -1, 1, 1)

    def extra_repr(self):
        return f"{self.weight.shape[0]}, eps={self.eps}"


def _dilate_basic_layer(layer: nn.Sequential) -> None:
    """DC5 for BasicBlock ResNets (torchvision only dilates Bottlenecks): stride 1, dilation 2.

    Same rule as torchvision's Bottleneck path: block 0 keeps dilation 1 with stride 1, the
    following blocks use dilation 2. No parameter changes, so state dicts are unaffected.
    """
    first = layer[0]
    first.conv1.stride = (1, 1)
    if first.downsample is not None:
        first.downsample[0].stride = (1, 1)
    for block in list(layer)[1:]:
        for conv in (block.conv1, block.conv2):
            conv.dilation, conv.padding = (2, 2), (2, 2)


class ResNetBody(nn.Module):
    """The ResNet trunk without avgpool/fc. forward -> [res2, res3, res4, res5]."""

    def __init__(self, cfg: DETRConfig):
        super().__init__()
        norm = FrozenBatchNorm2d if cfg.frozen_bn else nn.BatchNorm2d
        builder = getattr(tv_resnet, cfg.backbone)
        bottleneck = cfg.backbone in ("resnet50", "resnet101", "resnet152")
        net = builder(weights=None, norm_layer=norm,
                      replace_stride_with_dilation=[False, False, cfg.dilation and bottleneck])
        if cfg.dilation and not bottleneck:
            _dilate_basic_layer(net.layer4)
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        # Out-of-place ReLUs, so a tensor captured by a hook is never overwritten later.
        for m in self.modules():
            if isinstance(m, nn.ReLU):
                m.inplace = False

    def forward(self, x):                                   # (B, 3, H, W)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (B, 64, H/4, W/4)
        res2 = self.layer1(x)                               # (B, C2, H/4, W/4)
        res3 = self.layer2(res2)                            # (B, C3, H/8, W/8)
        res4 = self.layer3(res3)                            # (B, C4, H/16, W/16)
        res5 = self.layer4(res4)                            # (B, C5, H/32, W/32)  (H/16 with DC5)
        return [res2, res3, res4, res5]


class Backbone(nn.Module):
    """Runs the body and resizes the padding mask to each level."""

    def __init__(self, cfg: DETRConfig):
        super().__init__()
        self.body = ResNetBody(cfg)
        self.num_channels = cfg.backbone_channels[-1]

    def forward(self, images, mask):
        feats = self.body(images)
        masks = [F.interpolate(mask[None].float(), size=f.shape[-2:]).to(torch.bool)[0] for f in feats]
        return feats, masks                                 # masks[i]: (B, h_i, w_i) bool


class Joiner(nn.Sequential):
    """backbone.0 = Backbone, backbone.1 = position encoding (no state)."""

    def __init__(self, backbone: Backbone, position: PositionEmbeddingSine):
        super().__init__(backbone, position)

    def forward(self, images, mask):
        feats, masks = self[0](images, mask)
        # The official code encodes positions for all four levels and uses only the last;
        # we compute just that one (same values, less work).
        pos = self[1](masks[-1])                            # (B, d, h, w)
        return feats, masks, pos
