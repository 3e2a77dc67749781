"""The model: state-dict keys of the official checkpoints, frozen BN, shapes, config rules."""
import pytest
import torch
from conftest import DATA, TINY, tiny_model

from detr_viz.backbone import FrozenBatchNorm2d
from detr_viz.config import R50_DC5_PANOPTIC, R50_PANOPTIC, R101_PANOPTIC, DETRConfig
from detr_viz.segmentation import DETRPanoptic


def read_tsv(name):
    rows = (DATA / f"{name}.state_dict.tsv").read_text().splitlines()[1:]
    return [tuple(r.split("\t")) for r in rows]


@pytest.mark.parametrize("name,cfg", [("detr-r50-panoptic", R50_PANOPTIC),
                                      ("detr-r50-dc5-panoptic", R50_DC5_PANOPTIC),
                                      ("detr-r101-panoptic", R101_PANOPTIC)])
def test_state_dict_matches_official_keys_shapes_and_order(name, cfg):
    ref = read_tsv(name)
    model = DETRPanoptic(cfg)
    mine = [(k, "x".join(map(str, v.shape)), str(v.dtype).replace("torch.", ""))
            for k, v in model.state_dict().items()]
    assert mine == ref
    # A dict with exactly these keys and shapes loads strictly.
    fake = {k: torch.zeros(tuple(int(s) for s in shape.split("x"))) for k, shape, _ in ref}
    model.load_state_dict(fake, strict=True)


def test_frozen_batchnorm_uses_buffers_not_parameters():
    model = DETRPanoptic(R50_PANOPTIC)
    bn = model.detr.backbone[0].body.bn1
    assert isinstance(bn, FrozenBatchNorm2d)
    names = {n for n, _ in model.named_parameters()}
    assert "detr.backbone.0.body.bn1.weight" not in names
    assert "detr.backbone.0.body.bn1.running_var" in dict(model.named_buffers())
    assert not any("num_batches_tracked" in k for k in model.state_dict())


def test_frozen_batchnorm_formula():
    bn = FrozenBatchNorm2d(3)
    bn.weight.copy_(torch.tensor([1.0, 2.0, 0.5]))
    bn.bias.copy_(torch.tensor([0.0, 1.0, -1.0]))
    bn.running_mean.copy_(torch.tensor([0.5, -1.0, 2.0]))
    bn.running_var.copy_(torch.tensor([4.0, 1.0, 0.25]))
    x = torch.randn(2, 3, 4, 5)
    ref = torch.nn.functional.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias,
                                         training=False, eps=1e-5)
    torch.testing.assert_close(bn(x), ref)


def test_frozen_bn_loads_a_trainable_bn_checkpoint():
    trained = DETRPanoptic(TINY.replace(frozen_bn=False)).state_dict()
    assert any("num_batches_tracked" in k for k in trained)
    DETRPanoptic(TINY).load_state_dict(trained, strict=True)


def test_forward_returns_official_keys_and_shapes(tiny):
    x = torch.randn(1, 3, 97, 131)     # odd sizes: every stride-2 stage rounds up
    with torch.no_grad():
        out = tiny(x)
    assert set(out) == {"pred_logits", "pred_boxes", "pred_masks"}
    assert out["pred_logits"].shape == (1, 10, 251)
    assert out["pred_boxes"].shape == (1, 10, 4)
    assert out["pred_masks"].shape == (1, 10, 25, 33)     # ceil(97/4), ceil(131/4)
    assert out["pred_boxes"].min() >= 0 and out["pred_boxes"].max() <= 1


def test_batch_items_are_independent(tiny):
    torch.manual_seed(3)
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        both = tiny(x)
        one = tiny(x[1:])
    for k in both:
        torch.testing.assert_close(both[k][1:], one[k], atol=1e-4, rtol=1e-4)


def test_mask_subset_equals_full_forward(tiny):
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        full = tiny(x)["pred_masks"]
        det = tiny.detect(x)
        qs = [7, 2, 5]
        sub = tiny.mask_logits(det, tiny.attention_maps(det)[:, qs])
    assert torch.equal(sub, full[:, qs])         # the same rows of the same computation


def test_dilation_halves_the_stride_for_basic_and_bottleneck_blocks():
    x = torch.randn(1, 3, 64, 64)
    for cfg in (TINY.replace(dilation=True), ):
        m = tiny_model(cfg)
        with torch.no_grad():
            det = m.detect(x)
        assert det.memory.shape[-2:] == (4, 4)            # stride 16 instead of 32
    body = DETRPanoptic(R50_DC5_PANOPTIC).detr.backbone[0].body
    assert body.layer4[0].conv2.stride == (1, 1) and body.layer4[1].conv2.dilation == (2, 2)


def test_attention_maps_softmax_is_joint_over_heads_and_positions(tiny):
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        det = tiny.detect(x)
        maps = tiny.attention_maps(det)                   # (1, N, M, h, w)
    assert maps.shape == (1, 10, 8, 2, 3)
    torch.testing.assert_close(maps.sum(dim=(2, 3, 4)), torch.ones(1, 10))
    assert not torch.allclose(maps.sum(dim=(3, 4)), torch.ones(1, 10, 8))


def test_padding_mask_is_respected(tiny):
    x = torch.randn(1, 3, 64, 96)
    mask = torch.zeros(1, 64, 96, dtype=torch.bool)
    mask[:, :, 64:] = True                                # right third is padding
    with torch.no_grad():
        det = tiny.detect(x, mask)
        maps = tiny.attention_maps(det)
    assert det.mask[0, :, 2].all() and not det.mask[0, :, :2].any()
    assert maps[..., 2].abs().max() == 0                  # padded cells get no attention


@pytest.mark.parametrize("kw", [dict(hidden_dim=64), dict(hidden_dim=130), dict(backbone="vgg16")])
def test_config_rejects_impossible_sizes(kw):
    with pytest.raises(ValueError):
        DETRConfig(**kw)


def test_config_round_trip():
    cfg = TINY.replace(dilation=True, bbox_attention_scale=96.0)
    assert DETRConfig.from_dict(cfg.to_dict()) == cfg
    assert R50_PANOPTIC.fpn_dims == (1024, 512, 256)
    assert TINY.fpn_dims == (256, 128, 64)
    assert R50_PANOPTIC.mask_head_dims == (264, 128, 64, 32, 16)


def test_list_of_images_of_different_sizes_is_padded_and_masked(tiny):
    a, b = torch.randn(3, 64, 96), torch.randn(3, 80, 64)
    with torch.no_grad():
        out = tiny([a, b])
        x = torch.zeros(2, 3, 80, 96)
        mask = torch.ones(2, 80, 96, dtype=torch.bool)
        x[0, :, :64, :96], mask[0, :64, :96] = a, False
        x[1, :, :80, :64], mask[1, :80, :64] = b, False
        ref = tiny(x, mask)
    assert out["pred_masks"].shape == (2, 10, 20, 24)
    for k in ("pred_logits", "pred_boxes", "pred_masks"):
        assert torch.equal(out[k], ref[k]), k
