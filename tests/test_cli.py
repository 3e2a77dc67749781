"""The command line on a sample image, with a tiny checkpoint (no network)."""
import json
import os
import subprocess
import sys

import numpy as np
import torch
from conftest import REPO, TINY, tiny_model

SAMPLE = REPO / "assets" / "samples" / "chelsea.png"


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "detr_viz", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "DETR_VIZ_DEVICE": "cpu", **(env or {})})


def test_cli_writes_png_json_npz_and_prints_stage_table(tmp_path):
    ckpt = tmp_path / "tiny.pth"
    torch.save({"model": tiny_model().state_dict(), "config": TINY.replace(threshold=0.05).to_dict()}, ckpt)
    out = tmp_path / "out"
    r = run_cli(SAMPLE, "--model", ckpt, "--out", out, "--queries", "3")
    assert r.returncode == 0, r.stderr
    for stage in ("backbone.res5", "encoder.layer0.self_attn", "bbox_attention", "mask_head.fpn3", "pred_masks"):
        assert stage in r.stdout
    assert "Step 6/7" in r.stdout and "step 1/7" in r.stderr      # table and progress
    assert "1 x 256 x 200 x 301" not in r.stdout                   # tiny res2 has 64 channels
    png, seg, npz = (out / f"chelsea_{s}" for s in ("panoptic.png", "segments.json", "trace.npz"))
    assert png.read_bytes()[:4] == b"\x89PNG"
    info = json.loads(seg.read_text())
    assert info["target_size"] == [300, 451] and info["threshold"] == 0.05
    z = np.load(npz)
    assert 3 in z["mask_queries"]
    assert z["panoptic.id_map"].shape == (300, 451)


def test_cli_bad_image_is_a_clear_error(tmp_path):
    bad = tmp_path / "notes.jpg"
    bad.write_text("this is not a picture")
    ckpt = tmp_path / "tiny.pth"
    torch.save({"model": tiny_model().state_dict(), "config": TINY.to_dict()}, ckpt)
    r = run_cli(bad, "--model", ckpt, "--out", tmp_path)
    assert r.returncode == 2
    assert "error:" in r.stderr and "Traceback" not in r.stderr
    r = run_cli(SAMPLE, "--model", ckpt, "--out", tmp_path, "--queries", "99")    # TINY has 10 queries
    assert r.returncode == 2 and "error:" in r.stderr and "Traceback" not in r.stderr


def test_cli_unwritable_output_is_a_clear_error(tmp_path):
    ckpt = tmp_path / "tiny.pth"
    torch.save({"model": tiny_model().state_dict(), "config": TINY.to_dict()}, ckpt)
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    r = run_cli(SAMPLE, "--model", ckpt, "--out", blocker / "out", "--no-npz")
    assert r.returncode == 2 and "cannot write the results" in r.stderr and "Traceback" not in r.stderr


def test_cli_unknown_model_is_a_clear_error(tmp_path):
    r = run_cli(SAMPLE, "--model", "detr-r999", "--out", tmp_path)
    assert r.returncode == 2 and "unknown model" in r.stderr and "Traceback" not in r.stderr


def test_cli_checkpoint_with_categories_file(tmp_path, capsys):
    """`python -m detr_viz photo --checkpoint run/checkpoint.pth --categories cats.json` (in process)."""
    import argparse

    from detr_viz.__main__ import main
    cfg = TINY.replace(num_classes=3)
    torch.manual_seed(0)
    model = tiny_model(cfg)
    args = argparse.Namespace(backbone="resnet18", dilation=False, hidden_dim=128, nheads=8, enc_layers=1,
                              dec_layers=2, dim_feedforward=128, num_queries=10, pre_norm=False,
                              position_embedding="sine", masks=True, dataset_file="coco_panoptic")
    ckpt = tmp_path / "checkpoint.pth"
    torch.save({"model": model.state_dict(), "optimizer": {}, "lr_scheduler": {}, "epoch": 4, "args": args}, ckpt)
    cats = tmp_path / "cats.json"
    names = ["excavator", "worker", "gravel"]
    cats.write_text(json.dumps([{"id": i, "name": n, "isthing": int(i < 2), "color": [10 * i, 20, 30]}
                                for i, n in enumerate(names)]))
    out = tmp_path / "out"
    assert main([str(SAMPLE), "--checkpoint", str(ckpt), "--categories", str(cats), "--threshold", "0.0",
                 "--device", "cpu", "--out", str(out), "--no-npz"]) == 0
    err = capsys.readouterr().err
    assert "official training checkpoint" in err and f"categories file {cats}" in err and "guess" not in err
    segments = json.loads((out / "chelsea_segments.json").read_text())["segments_info"]
    assert segments and all(s["name"] == names[s["category_id"]] for s in segments)
    assert all(s["isthing"] == (s["category_id"] < 2) for s in segments)
    assert any(s["color"] == [10 * s["category_id"], 20, 30] for s in segments)     # the file's colours
    assert main([str(SAMPLE), "--checkpoint", str(ckpt), "--device", "cpu", "--out", str(out), "--no-npz"]) == 0
    assert "thing/stuff is a guess" in capsys.readouterr().err
    cats.write_text('[{"id": 0, "name": "x"}]')
    assert main([str(SAMPLE), "--checkpoint", str(ckpt), "--categories", str(cats), "--out", str(out)]) == 2
    assert "missing isthing" in capsys.readouterr().err
