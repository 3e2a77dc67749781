"""Write tests/data/hf_detr_tiny/: a small random `DetrForSegmentation` saved by transformers itself,
and transformers' own outputs on a fixed input, for tests/test_formats_hf.py (which does not
import transformers).

    python scripts/make_hf_fixture.py            # needs transformers + timm; no download

The model: resnet18 backbone through timm (random, `use_pretrained_backbone=False`), d_model 128,
8 heads, 1 encoder and 2 decoder layers, 6 queries, 5 labels. Every tensor of the saved file is
set from a seed derived from its key (`seeded_tensor`), then the model is loaded with
`from_pretrained` and saved again with `save_pretrained`; the script checks that the file
transformers wrote holds exactly the seeded tensors. The resnet18 backbone alone is 45 MB, so the
fixture keeps the file without the backbone tensors (`model.nobackbone.safetensors`) plus their
keys and shapes (`backbone.json`); the test rebuilds the full `model.safetensors` from the seed.
`outputs.safetensors` holds the input and transformers' pred_logits, pred_boxes and pred_masks.
"""
from __future__ import annotations

import json
import math
import tempfile
import zlib
from pathlib import Path

import torch

OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "hf_detr_tiny"
BACKBONE = "backbone."          # saved keys containing this are rebuilt by the test
INPUT_SHAPE = (1, 3, 96, 128)   # (B, 3, H, W)


def seeded_tensor(key: str, shape) -> torch.Tensor:
    """A float32 tensor that depends only on (key, shape): scaled normal weights, BN-like vectors."""
    g = torch.Generator().manual_seed(zlib.crc32(key.encode()))
    x = torch.randn(tuple(shape), generator=g)
    if len(shape) >= 2:
        fan_in = math.prod(shape[1:])
        return x / math.sqrt(fan_in)
    if key.endswith("running_var"):
        return 1.0 + 0.2 * x.abs()
    if key.endswith(("weight", "running_mean")) and "norm" not in key and "running_mean" not in key:
        return 1.0 + 0.1 * x                                  # BN / frozen BN scale
    return 0.1 * x


def _config():
    from transformers import DetrConfig
    return DetrConfig(
        use_timm_backbone=True, backbone="resnet18", use_pretrained_backbone=False, dilation=False,
        d_model=128, encoder_layers=1, decoder_layers=2, encoder_attention_heads=8, decoder_attention_heads=8,
        encoder_ffn_dim=64, decoder_ffn_dim=64, num_queries=6, dropout=0.0, attention_dropout=0.0,
        id2label={0: "crane", 1: "worker", 2: "helmet", 3: "gravel", 4: "sky"})


def main() -> None:
    from safetensors.torch import load_file, save_file
    from transformers import DetrForSegmentation

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        first, second = Path(tmp) / "first", Path(tmp) / "second"
        DetrForSegmentation(_config()).save_pretrained(first)
        saved = load_file(first / "model.safetensors")
        seeded = {k: seeded_tensor(k, v.shape) for k, v in saved.items()}
        save_file(seeded, first / "model.safetensors", metadata={"format": "pt"})
        model, info = DetrForSegmentation.from_pretrained(first, output_loading_info=True)
        assert not any(info.values()), info                  # every tensor used, none missing
        model.eval().save_pretrained(second)                 # the file the fixture keeps: transformers' own
        written = load_file(second / "model.safetensors")
        assert written.keys() == seeded.keys() and all(torch.equal(written[k], seeded[k]) for k in seeded)

        pixels = torch.randn(INPUT_SHAPE, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            out = model(pixel_values=pixels, pixel_mask=torch.ones(INPUT_SHAPE[0], *INPUT_SHAPE[2:]))
        OUT.mkdir(parents=True, exist_ok=True)
        rest = {k: v for k, v in written.items() if BACKBONE not in k}
        save_file(rest, OUT / "model.nobackbone.safetensors", metadata={"format": "pt"})
        backbone = {k: list(v.shape) for k, v in written.items() if BACKBONE in k}
        (OUT / "backbone.json").write_text(json.dumps(backbone, indent=0) + "\n")
        (OUT / "config.json").write_text((second / "config.json").read_text())
        save_file({"pixel_values": pixels, "pred_logits": out.logits, "pred_boxes": out.pred_boxes,
                   "pred_masks": out.pred_masks}, OUT / "outputs.safetensors")
    print(f"wrote {OUT}: {len(rest)} tensors kept, {len(backbone)} backbone tensors by seed; "
          f"logits {tuple(out.logits.shape)}, masks {tuple(out.pred_masks.shape)}")


if __name__ == "__main__":
    main()
