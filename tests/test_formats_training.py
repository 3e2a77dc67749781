"""Issue 14.1: checkpoints of the official training script (`main.py --masks`), loaded safely."""
from __future__ import annotations

import argparse
import json

import pytest
import torch

import detr_viz
from detr_viz.config import DETRConfig
from detr_viz.errors import WeightsUnavailable
from detr_viz.segmentation import DETRPanoptic

# A custom dataset's model: 48 classes, 50 queries, DC5 (small widths to stay fast; official layout).
CUSTOM = DETRConfig(backbone="resnet18", dilation=True, hidden_dim=128, nheads=8, enc_layers=1, dec_layers=2,
                    dim_feedforward=64, num_queries=50, num_classes=48)


class Evil:
    """Any class other than argparse.Namespace: must never be unpickled."""


def official_args(cfg: DETRConfig, **changes) -> argparse.Namespace:
    """The Namespace `main.py --masks --dataset_file coco_panoptic ...` stores (its defaults)."""
    args = dict(
        lr=1e-4, lr_backbone=1e-5, batch_size=2, weight_decay=1e-4, epochs=300, lr_drop=200, clip_max_norm=0.1,
        frozen_weights=None, backbone=cfg.backbone, dilation=cfg.dilation, position_embedding="sine",
        enc_layers=cfg.enc_layers, dec_layers=cfg.dec_layers, dim_feedforward=cfg.dim_feedforward,
        hidden_dim=cfg.hidden_dim, dropout=0.1, nheads=cfg.nheads, num_queries=cfg.num_queries, pre_norm=False,
        masks=True, aux_loss=True, set_cost_class=1, set_cost_bbox=5, set_cost_giou=2, mask_loss_coef=1,
        dice_loss_coef=1, bbox_loss_coef=5, giou_loss_coef=2, eos_coef=0.1, dataset_file="coco_panoptic",
        coco_path="/data/site", coco_panoptic_path="/data/site/panoptic", remove_difficult=False,
        output_dir="runs/site", device="cuda", seed=42, resume="", start_epoch=0, eval=False, num_workers=2,
        world_size=1, dist_url="env://", distributed=False)
    args.update(changes)
    return argparse.Namespace(**args)


def save_like_main_py(model: DETRPanoptic, path, args, **extra) -> None:
    """utils.save_on_master({'model', 'optimizer', 'lr_scheduler', 'epoch', 'args'}, checkpoint.pth)."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)
    params[0].grad = torch.zeros_like(params[0])
    optimizer.step()                                          # so that the optimizer has state tensors
    lr_scheduler = torch.optim.lr_scheduler.StepLR(optimizer, args.lr_drop)
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "lr_scheduler": lr_scheduler.state_dict(), "epoch": 11, "args": args, **extra}, path)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.manual_seed(3)
    model = DETRPanoptic(CUSTOM).eval()
    path = tmp_path_factory.mktemp("run") / "checkpoint.pth"    # no "dc5" in the name: dilation from args
    save_like_main_py(model, path, official_args(CUSTOM))
    return model, path


def test_training_checkpoint_loads_with_its_architecture_and_equal_outputs(trained):
    model, path = trained
    loaded = detr_viz.create_model(path, device="cpu")
    assert loaded.config.replace(categories="coco") == CUSTOM.replace(categories="coco")
    assert loaded.config.dilation and loaded.config.num_classes == 48 and loaded.config.num_queries == 50
    assert "args" in loaded.source["architecture"] and "training" in loaded.source["format"]
    x = torch.randn(1, 3, 96, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want, got = model(x), loaded(x)
    for key in ("pred_logits", "pred_boxes", "pred_masks"):
        assert torch.equal(got[key], want[key]), key


def test_training_checkpoint_without_categories_file_guesses(trained):
    cats = detr_viz.create_model(trained[1], device="cpu").categories
    assert cats[17].name == "class 17" and cats.isthing_guessed and cats[48].name == "no object"


def test_training_checkpoint_with_categories_file(trained, tmp_path):
    path = tmp_path / "site_categories.json"
    path.write_text(json.dumps({"categories": [{"id": 1, "name": "excavator", "isthing": 1, "color": [250, 200, 0]},
                                               {"id": 2, "name": "gravel", "isthing": 0}]}))
    model = detr_viz.create_model(trained[1], categories=path, device="cpu")
    assert (model.categories[1].name, model.categories.is_thing(1), model.categories[1].color) == \
        ("excavator", True, (250, 200, 0))
    assert not model.categories.is_thing(2) and not model.categories.isthing_guessed
    assert model.config.categories == str(path) and model.source["categories"] == str(path)
    bad = tmp_path / "bad.json"
    bad.write_text('[{"id": 60, "name": "x", "isthing": 1}]')
    with pytest.raises(ValueError, match="has 48 classes"):
        detr_viz.create_model(trained[1], categories=bad, device="cpu")


def test_a_file_pickling_another_class_is_refused_and_named(trained, tmp_path):
    model, _ = trained
    path = tmp_path / "checkpoint.pth"
    save_like_main_py(model, path, official_args(CUSTOM), extra=Evil())
    with pytest.raises(WeightsUnavailable, match=r"other than tensors \(\S*Evil\)"):
        detr_viz.create_model(path, device="cpu")


def test_args_without_architecture_fall_back_to_the_weights(tmp_path):
    cfg = CUSTOM.replace(dilation=False)
    path = tmp_path / "old.pth"
    save_like_main_py(DETRPanoptic(cfg).eval(), path, argparse.Namespace(lr=1e-4, weight_decay=1e-4, lr_drop=200))
    loaded = detr_viz.create_model(path, device="cpu")
    assert loaded.config.replace(categories="coco") == cfg.replace(categories="coco")
    assert loaded.source["architecture"] == "the weights"


def test_args_decide_what_the_weights_cannot_show(tmp_path):
    # 16 heads is seen in the mask head (d + M); args' 16 heads and DC5 are used as written
    cfg = CUSTOM.replace(nheads=16, dilation=False)
    path = tmp_path / "checkpoint.pth"
    save_like_main_py(DETRPanoptic(cfg).eval(), path, official_args(cfg, dilation=True))
    loaded = detr_viz.create_model(path, device="cpu")
    assert loaded.config.nheads == 16 and loaded.config.dilation


@pytest.mark.parametrize("changes, message", [({"pre_norm": True}, "pre_norm"),
                                              ({"position_embedding": "learned"}, "position_embedding learned")])
def test_unsupported_training_options_are_clear_errors(trained, tmp_path, changes, message):
    path = tmp_path / "checkpoint.pth"
    save_like_main_py(trained[0], path, official_args(CUSTOM, **changes))
    with pytest.raises(WeightsUnavailable, match=message):
        detr_viz.create_model(path, device="cpu")


def test_detection_only_training_checkpoint_keeps_its_clear_error(trained, tmp_path):
    sd = {k[len("detr."):]: v for k, v in trained[0].state_dict().items() if k.startswith("detr.")}
    path = tmp_path / "checkpoint.pth"
    torch.save({"model": sd, "epoch": 1, "args": official_args(CUSTOM, masks=False)}, path)
    with pytest.raises(WeightsUnavailable, match="detection-only"):
        detr_viz.create_model(path, device="cpu")
