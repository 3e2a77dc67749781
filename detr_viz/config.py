"""Model configuration: one dataclass that builds a DETR panoptic model of any size.

The three official checkpoints use `DETRConfig()` with only the backbone / dilation changed;
the toy-world model is a small config of the same architecture.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

# Output channels of torchvision ResNet stages (layer1..layer4).
RESNET_CHANNELS = {
    "resnet18": (64, 128, 256, 512),
    "resnet34": (64, 128, 256, 512),
    "resnet50": (256, 512, 1024, 2048),
    "resnet101": (256, 512, 1024, 2048),
    "resnet152": (256, 512, 1024, 2048),
}


@dataclass(frozen=True)
class DETRConfig:
    backbone: str = "resnet50"        # any key of RESNET_CHANNELS
    dilation: bool = False            # DC5: last stage dilated, stride 16 instead of 32
    hidden_dim: int = 256             # d
    nheads: int = 8                   # M
    enc_layers: int = 6
    dec_layers: int = 6
    dim_feedforward: int = 2048
    num_queries: int = 100            # N
    num_classes: int = 250            # class head has num_classes + 1 outputs (last = no-object)
    dropout: float = 0.1              # inactive in eval mode
    frozen_bn: bool = True            # FrozenBatchNorm2d (weight, bias, running stats as buffers)
    # Multiplies the box-attention maps before the concat with input_proj(res5). 1.0 for the
    # official checkpoints; small models trained from scratch need a larger value (see README).
    bbox_attention_scale: float = 1.0
    categories: str = "coco"          # category table: "coco" or "toyworld"
    threshold: float = 0.85           # default score threshold of the panoptic merge
    # The resize the model was trained for: shorter side `input_size`, longer at most `max_input_size`
    # (None: no cap). 800 / 1333 as the official evaluation; the toy-world model uses 160 / 480.
    input_size: int = 800
    max_input_size: int | None = 1333

    def __post_init__(self):
        if self.backbone not in RESNET_CHANNELS:
            raise ValueError(f"unknown backbone {self.backbone!r}; choose one of {sorted(RESNET_CHANNELS)}")
        if self.hidden_dim % self.nheads:
            raise ValueError(f"hidden_dim {self.hidden_dim} is not divisible by nheads {self.nheads}")
        if self.hidden_dim % 2:
            raise ValueError("hidden_dim must be even (half of it encodes y, half x)")
        for c in self.mask_head_dims[:5]:
            if c % 8:
                raise ValueError(
                    f"mask head width {c} is not divisible by 8 (GroupNorm(8, C)); "
                    f"hidden_dim={self.hidden_dim}, nheads={self.nheads} give {self.mask_head_dims}")

    # ---- derived sizes -------------------------------------------------------------
    @property
    def backbone_channels(self) -> tuple[int, int, int, int]:
        """Channels of res2, res3, res4, res5."""
        return RESNET_CHANNELS[self.backbone]

    @property
    def fpn_dims(self) -> tuple[int, int, int]:
        """Channels of the backbone skips the mask head adapts: res4, res3, res2."""
        c2, c3, c4, _ = self.backbone_channels
        return (c4, c3, c2)

    @property
    def mask_head_dims(self) -> tuple[int, ...]:
        """Widths of lay1..lay5 inputs/outputs, as MaskHeadSmallConv: [d+M, d/2, d/4, d/8, d/16]."""
        d = self.hidden_dim
        return (d + self.nheads, d // 2, d // 4, d // 8, d // 16)

    @property
    def stride(self) -> int:
        """Stride of res5 (the transformer's grid): 32, or 16 with dilation."""
        return 16 if self.dilation else 32

    # ---- (de)serialisation -----------------------------------------------------------
    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> DETRConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def replace(self, **kw) -> DETRConfig:
        return replace(self, **kw)


R50_PANOPTIC = DETRConfig()
R50_DC5_PANOPTIC = DETRConfig(dilation=True)
R101_PANOPTIC = DETRConfig(backbone="resnet101")
