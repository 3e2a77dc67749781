"""The trace: every stage of Table B recorded with the reference shapes; subset masks equal the
full forward's; more queries on request; the stage registry is the single source of names."""
import re

import numpy as np
import pytest
import torch
from conftest import DATA, TINY, tiny_model
from PIL import Image

import detr_viz
from detr_viz.config import R50_PANOPTIC
from detr_viz.segmentation import DETRPanoptic
from detr_viz.stages import STAGES, stage, stage_names


def table_b(size: str) -> dict:
    """Rows of Table B in the reference shapes file: number -> list of shapes (tuples)."""
    text = (DATA / "detr-r50-panoptic.shapes.md").read_text()
    section = text.split(f"## Table B — teaching pipeline stages, input 1x3x{size}")[1].split("\n## ")[0]
    rows = {}
    for line in section.splitlines():
        m = re.match(r"^\| (\w+) \| [^|]+ \| ([^|]+) \|", line)
        if m:
            rows[m.group(1)] = [tuple(int(v) for v in s.split("x"))
                                for s in re.findall(r"\d+(?:x\d+)+", m.group(2))]
    return rows


@pytest.fixture(scope="module")
def r50():
    torch.manual_seed(0)
    return DETRPanoptic(R50_PANOPTIC).eval()


@pytest.mark.parametrize("size,hw", [(800, "800x1066"), (480, "480x640")])
def test_r50_trace_shapes_match_reference_table_b(r50, size, hw):
    ref = table_b(hw)
    image = Image.new("RGB", (640, 480), (120, 80, 40))
    t = detr_viz.trace(r50, image, size=size, queries=[0, 1, 2])
    K = len(t.mask_queries)
    assert K >= 3
    per_query = lambda s: (K,) + s[1:]
    assert t.shape("input") == ref["0"][0]
    assert t.shape("input.mask") == ref["0b"][0]
    assert [t.shape(f"backbone.{n}") for n in ("conv1", "bn1", "relu")] == [ref["1"][0]] * 3
    assert t.shape("backbone.maxpool") == ref["1"][1]
    for i, n in enumerate(("res2", "res3", "res4", "res5")):
        assert t.shape(f"backbone.{n}") == ref[str(i + 2)][0]
    assert t.shape("backbone.mask") == ref["6"][-1]
    assert t.shape("position") == ref["7"][-1]
    assert t.shape("input_proj") == ref["8"][0]
    for i in range(6):
        assert t.shape(f"encoder.layer{i}") == ref["10"][0]
        assert t.shape(f"encoder.layer{i}.self_attn") == ref["11"][1]     # per-head
        assert t.shape(f"decoder.layer{i}") == ref["13"][0]
        assert t.shape(f"decoder.layer{i}.self_attn") == ref["14"][1]
        assert t.shape(f"decoder.layer{i}.cross_attn") == ref["15"][1]
    assert t.shape("memory") == ref["12"][1]
    assert t.shape("decoder.hs") == ref["16"][1]
    assert t.shape("decoder.class_logits") == ref["17"][0]
    assert t.shape("pred_logits") == ref["17"][1]
    assert t.shape("decoder.boxes") == ref["18"][0]
    assert t.shape("pred_boxes") == ref["18"][1]
    assert t.shape("bbox_attention") == ref["19"][0]
    assert t.shape("mask_head.concat") == per_query(ref["20"][0])
    assert t.shape("mask_head.lay1") == per_query(ref["21"][0])
    assert t.shape("mask_head.gn2") == per_query(ref["22"][1])
    assert t.shape("mask_head.adapter1") == ref["23"][0]
    assert t.shape("mask_head.lay3") == per_query(ref["24"][1])
    assert t.shape("mask_head.fpn1") == per_query(ref["24"][0])
    assert t.shape("mask_head.adapter2") == ref["25"][0]
    assert t.shape("mask_head.lay4") == per_query(ref["26"][1])
    assert t.shape("mask_head.adapter3") == ref["27"][0]
    assert t.shape("mask_head.lay5") == per_query(ref["28"][1])
    assert t.shape("mask_head.out_lay") == per_query(ref["29"][0])
    assert t.shape("pred_masks") == (1, K) + ref["30"][0][2:]
    # Every stage of the registry is present, and nothing else.
    assert t.names() == stage_names(R50_PANOPTIC)


def test_trace_masks_equal_full_forward_for_kept_queries(tiny_confident):
    t = detr_viz.trace(tiny_confident, Image.new("RGB", (96, 64), (30, 160, 90)), size=64, threshold=0.85)
    assert t.panoptic.kept.size > 0, "the biased tiny model keeps some queries"
    assert set(t.panoptic.kept.tolist()) <= set(t.mask_queries)
    with torch.no_grad():
        full = tiny_confident(t["input"])
    torch.testing.assert_close(t["pred_logits"], full["pred_logits"])
    torch.testing.assert_close(t["pred_boxes"], full["pred_boxes"])
    rows = [t.mask_queries.index(q) for q in t.panoptic.kept]
    assert torch.equal(t["pred_masks"][:, rows], full["pred_masks"][:, t.panoptic.kept])   # the same computation
    # ... and the merge of the trace equals the merge of the full forward.
    ref = detr_viz.postprocess_panoptic(full, t.pre.processed_size, t.pre.original_size, 0.85, t.categories)
    np.testing.assert_array_equal(t.panoptic.id_map, ref.id_map)
    assert t.panoptic.segments == ref.segments


def test_only_kept_and_requested_queries_run_the_mask_head(tiny_confident):
    image = Image.new("RGB", (96, 64), (30, 160, 90))
    t = detr_viz.trace(tiny_confident, image, size=64, threshold=0.999)
    assert t.mask_queries and len(t.mask_queries) < TINY.num_queries
    t2 = detr_viz.trace(tiny_confident, image, size=64, threshold=0.999, queries=[9, 3])
    assert {9, 3} <= set(t2.mask_queries)
    assert t2["mask_head.lay1"].shape[0] == len(t2.mask_queries)


def test_nothing_kept_still_traces_the_best_query(tiny):
    t = detr_viz.trace(tiny, Image.new("RGB", (64, 64)), size=64, threshold=0.9999)
    assert t.panoptic.segments == [] and t.panoptic.kept.size == 0
    assert len(t.mask_queries) == 1
    assert t["mask_head.out_lay"].shape[0] == 1
    # one query alone is run beside a copy of itself: bit-exact with the full forward, and neither
    # the stored stages nor the module table show the copy
    with torch.no_grad():
        full = tiny(t["input"])["pred_masks"][:, t.mask_queries]
    assert torch.equal(t["pred_masks"], full)
    shapes = dict((name, shape) for name, _, shape in t.modules)
    assert shapes["mask_head.lay1"].startswith("1x") and shapes["mask_head"].startswith("1x1x")
    assert shapes["mask_head.adapter1"].startswith("1x")


def test_more_queries_on_request_match_the_full_forward(tiny):
    t = detr_viz.trace(tiny, Image.new("RGB", (80, 64), (200, 10, 10)), size=64, threshold=0.9999)
    q = next(q for q in range(10) if q not in t.mask_queries)
    mask = t.query("pred_masks", q)                       # runs the mask head for q
    lay3 = t.query("mask_head.lay3", q)
    with torch.no_grad():
        full = tiny(t["input"])["pred_masks"][:, q]
    assert torch.equal(mask, full)
    assert lay3.shape == (32, 4, 5)             # 64 x 80 input: 1/16 grid is 4 x 5
    assert t.mask_queries.count(q) == 1
    with pytest.raises(IndexError):
        t.ensure_queries([99])


def test_rethreshold_changes_kept_set(tiny_confident):
    t = detr_viz.trace(tiny_confident, Image.new("RGB", (96, 64), (30, 160, 90)), size=64, threshold=0.85)
    low = t.merge(0.5)
    high = t.merge(0.9999)
    assert len(low.kept) > len(t.panoptic.kept) >= len(high.kept)
    assert low.segment_of_query(1) is not None and high.segment_of_query(1) is None


def test_tensors_are_detached_cpu_and_not_overwritten(tiny):
    t = detr_viz.trace(tiny, Image.new("RGB", (64, 64), (90, 90, 90)), size=64)
    for name in t.names():
        x = t[name]
        assert x.device.type == "cpu" and not x.requires_grad, name
    # bn1 is captured before the (out-of-place) ReLU: it still has negative values.
    assert t["backbone.bn1"].min() < 0 <= t["backbone.relu"].min()
    torch.testing.assert_close(t["backbone.relu"], t["backbone.bn1"].clamp(min=0))
    torch.testing.assert_close(t["decoder.class_logits"][-1], t["pred_logits"])


def test_encoder_attention_recomputed_when_too_big_to_store(tiny, monkeypatch):
    image = Image.new("RGB", (96, 64), (10, 200, 30))
    stored = detr_viz.trace(tiny, image, size=64)
    monkeypatch.setattr(detr_viz.trace_module if hasattr(detr_viz, "trace_module") else
                        __import__("detr_viz.trace", fromlist=["x"]), "ENCODER_ATTENTION_STORE_LIMIT", 1)
    lazy = detr_viz.trace(tiny, image, size=64)
    assert "encoder.layer0.self_attn" not in lazy.tensors and "encoder.layer0.self_attn" in lazy
    # the q / padding masks it is recomputed from live in their declared side store, not among the stages
    assert set(lazy.tensors) <= set(stage_names(TINY)) and set(lazy.encoder_qk) == {0}
    assert stored.encoder_qk == {} and "encoder.layer1.self_attn" not in lazy
    assert lazy.shape("encoder.layer0.self_attn") == stored.shape("encoder.layer0.self_attn")
    assert lazy.nbytes == stored.nbytes - stored["encoder.layer0.self_attn"].nbytes + sum(
        x.nbytes for x in lazy.encoder_qk[0] if x is not None)
    torch.testing.assert_close(lazy["encoder.layer0.self_attn"], stored["encoder.layer0.self_attn"])
    torch.testing.assert_close(lazy.encoder_attention_row(0, 4), stored.encoder_attention_row(0, 4))
    assert lazy.names() == stored.names()


def test_attention_weights_are_per_head_and_rows_sum_to_one(tiny):
    t = detr_viz.trace(tiny, Image.new("RGB", (96, 64), (10, 20, 200)), size=64)
    enc = t["encoder.layer0.self_attn"]                  # (1, M, hw, hw)
    cross = t["decoder.layer1.cross_attn"]               # (1, M, N, hw)
    assert enc.shape[1] == 8 and cross.shape[1] == 8
    torch.testing.assert_close(enc.sum(-1), torch.ones_like(enc.sum(-1)))
    torch.testing.assert_close(cross.sum(-1), torch.ones_like(cross.sum(-1)))
    assert not torch.allclose(enc[0, 0], enc[0, 1])


def test_modules_lists_every_submodule_with_shapes(tiny):
    t = detr_viz.trace(tiny, Image.new("RGB", (64, 64)), size=64)
    rows = {name: shape for name, _, shape in t.modules}
    assert len(rows) == len(list(tiny.named_modules()))
    assert rows["detr.input_proj"] == "1x128x2x2"
    assert rows["bbox_attention.k_linear"] == "not called"     # used through F.conv2d, as official
    assert rows["mask_head.lay1"].startswith(f"{len(t.mask_queries)}x136x2x2")


def test_timings_and_device_recorded(tiny):
    t = detr_viz.trace(tiny, Image.new("RGB", (64, 64)), size=64)
    assert {"backbone", "encoder", "decoder", "bbox_attention", "mask_head", "merge"} <= set(t.timings)
    assert all(v >= 0 for v in t.timings.values())
    assert t.device == "cpu" and t.device_name.startswith("CPU")


def test_npz_export_round_trip(tiny, tmp_path):
    t = detr_viz.trace(tiny, Image.new("RGB", (64, 64), (1, 2, 3)), size=64)
    path = tmp_path / "t.npz"
    t.to_npz(path)
    z = np.load(path)
    assert set(t.names()) <= set(z.files)
    np.testing.assert_array_equal(z["memory"], t["memory"].numpy())
    np.testing.assert_array_equal(z["panoptic.id_map"], t.panoptic.id_map)


def test_stage_registry_is_consistent():
    names = [s.name for s in STAGES]
    assert len(names) == len(set(names))
    assert {s.step for s in STAGES} == set(range(1, 7))
    assert stage("decoder.layer5.cross_attn").step == 3
    with pytest.raises(KeyError):
        stage("not.a.stage")
    with pytest.raises(KeyError):
        detr_viz.trace(tiny_model(), Image.new("RGB", (64, 64)), size=64)["not.a.stage"]


def test_derived_stages_equal_what_the_forward_computed(tiny_confident):
    """ReLUs, upsamplings and FPN sums are re-made on request; they must equal the live values."""
    t = detr_viz.trace(tiny_confident, Image.new("RGB", (96, 64), (50, 90, 200)), size=64)
    seen = {}
    names = ["mask_head.relu2", "mask_head.up1", "mask_head.up3", "mask_head.relu5"]
    handles = [tiny_confident.get_submodule(n).register_forward_hook(
        lambda m, a, out, n=n: seen.__setitem__(n, out.detach().clone())) for n in names]
    handles.append(tiny_confident.detr.backbone[0].body.relu.register_forward_hook(
        lambda m, a, out: seen.__setitem__("backbone.relu", out.detach().clone())))
    # what the real mask head's convolutions consumed: fpn_k is the input of lay_{k+2}, whatever the
    # FPN sums' own modules did (the trace rebuilds fpn_k as up_k + adapter_k)
    for k in (1, 2, 3):
        handles.append(tiny_confident.get_submodule(f"mask_head.lay{k + 2}").register_forward_pre_hook(
            lambda m, a, k=k: seen.__setitem__(f"mask_head.fpn{k}", a[0].detach().clone())))
    try:
        with torch.no_grad():
            det = tiny_confident.detect(t["input"])
            tiny_confident.mask_logits(det, tiny_confident.attention_maps(det)[:, t.mask_queries])
    finally:
        for h in handles:
            h.remove()
    for n, live in seen.items():
        assert n not in t.tensors, f"{n} should not be stored"
        assert torch.equal(t[n], live), n
    q = t.mask_queries[1]
    assert torch.equal(t.query("mask_head.fpn2", q), t["mask_head.fpn2"][1])


def test_low_threshold_merge_runs_masks_without_recording_stages(tiny_confident):
    t = detr_viz.trace(tiny_confident, Image.new("RGB", (96, 64), (30, 160, 90)), size=64, threshold=0.85)
    traced = list(t.mask_queries)
    low = t.merge(0.5)                                   # query 1 (about 0.6) joins
    assert 1 in low.kept.tolist() and 1 not in t.mask_queries
    assert t.mask_queries == traced and t["mask_head.lay1"].shape[0] == len(traced)
    with torch.no_grad():
        full = tiny_confident(t["input"])
    ref = detr_viz.postprocess_panoptic(full, t.pre.processed_size, t.pre.original_size, 0.5, t.categories)
    np.testing.assert_array_equal(low.id_map, ref.id_map)
    # mask_logits serves traced, merge-only and untraced queries alike, equal to the full forward
    qs = [traced[0], 1, 2]
    assert 2 not in traced and 2 not in low.kept.tolist()
    assert torch.equal(t.mask_logits(qs), full["pred_masks"][0, qs])
    assert 1 not in t.mask_queries and 2 in t.mask_queries       # only the untraced query got traced
    # Asking for the query's stages records them; the merge result does not change.
    assert t.query("mask_head.lay2", 1).shape[0] == 64
    np.testing.assert_array_equal(t.merge(0.5).id_map, low.id_map)


def test_a_shared_trace_survives_concurrent_sessions(tiny_confident):
    """Traces are shared by all sessions of the app: concurrent queries and merges stay consistent."""
    import threading
    t = detr_viz.trace(tiny_confident, Image.new("RGB", (96, 64), (30, 160, 90)), size=64)
    errors = []

    def work(qs, thr):
        try:
            for q in qs:
                t.query("mask_head.fpn2", q)
                t.merge(thr)
                t["mask_head.relu1"]
        except Exception as e:                          # noqa: BLE001 - collected for the assertion
            errors.append(e)
    threads = [threading.Thread(target=work, args=(range(10), 0.5)),
               threading.Thread(target=work, args=(range(9, -1, -1), 0.3)),
               threading.Thread(target=lambda: detr_viz.trace(tiny_confident, Image.new("RGB", (64, 64)), size=64))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    assert sorted(t.mask_queries) == list(range(10)) and len(t.mask_queries) == 10
    assert t["mask_head.lay1"].shape[0] == t["pred_masks"].shape[1] == 10
