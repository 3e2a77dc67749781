"""Stage descriptions are true for the model: strides come from its config (issue 12, section 2)."""
import pytest

from detr_viz.config import R50_DC5_PANOPTIC, R50_PANOPTIC
from detr_viz.stages import STAGES, describe, stage, stage_names
from detr_viz.toyworld.config import TOYWORLD_CONFIG


@pytest.mark.parametrize("cfg", [R50_DC5_PANOPTIC, TOYWORLD_CONFIG], ids=["dc5", "toyworld"])
def test_stride_16_models_are_never_described_at_1_32(cfg):
    assert cfg.stride == 16
    texts = [describe(n, cfg) for n in stage_names(cfg)]
    assert not [t for t in texts if "32" in t]
    assert describe("mask_head.lay1", cfg) == "3x3 conv at 1/16 (the res5 grid)"
    assert "stride 16" in describe("backbone.res5", cfg)


def test_stride_32_model_and_no_model():
    assert describe("mask_head.lay2", R50_PANOPTIC) == "3x3 conv at 1/32 (the res5 grid)"
    assert "1/32" in describe("mask_head.up1", R50_PANOPTIC)
    assert describe("backbone.res5") == "Res5 = layer4 output, stride 32 (16 with DC5)"
    assert stage("encoder.layer3.self_attn", R50_PANOPTIC).description.startswith("encoder layer 3")
    # no template field is left unfilled, with or without a config
    for cfg in (None, R50_PANOPTIC, R50_DC5_PANOPTIC):
        assert not [n for n in stage_names(cfg) if "{" in describe(n, cfg)]
    # symbolic shapes state no stride that differs between models: 1/16, 1/8, 1/4 grids by name
    assert not [s.name for s in STAGES if "2h" in s.shape or "4h" in s.shape or "8h" in s.shape]
