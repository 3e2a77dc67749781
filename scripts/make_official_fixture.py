"""Record the official DETR code's outputs on our reference weights (tests/data/official_outputs.pt).

    python scripts/make_official_fixture.py --official /path/to/facebookresearch-detr-checkout

Needs a checkout of facebookresearch/detr (not part of this repo; nothing of it is copied here).
panopticapi is not needed: its two tiny id <-> RGB functions are written below. The reference
weights come from tests/official_reference.py; the input is a sample photo preprocessed by detr_viz.
For each case it stores the official model's outputs and the official PostProcessPanoptic result at
the lowest threshold that keeps several segments, things and stuff, with a stuff merge. Input sizes
are small (the file stays a few MB); "odd" sizes make the mask head's upsampling not exactly 2x.
"""
import argparse
import io
import sys
import types
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
# name -> backbone, dilation, shorter side of the input, number of hand-made merge cases
CASES = {"r50": dict(backbone="resnet50", dilation=False, size=128, merges=6),       # 32 x 40 masks: 2x steps
         "r50-dc5": dict(backbone="resnet50", dilation=True, size=96, merges=6),     # res4 grid = res5 grid
         "r50-odd": dict(backbone="resnet50", dilation=False, size=100, merges=0),   # res5 4 x 4, res4 7 x 8
         "r101": dict(backbone="resnet101", dilation=False, size=100, merges=0)}
MIN_SEGMENTS = 4


def panopticapi_stub() -> None:
    """panopticapi.utils with the two functions the official post-processor uses (written here:
    id = R + 256 G + 256^2 B)."""
    def rgb2id(color):
        color = np.asarray(color, dtype=np.int64)
        return color[..., 0] + 256 * color[..., 1] + 256 * 256 * color[..., 2]

    def id2rgb(ids):
        ids = np.asarray(ids, dtype=np.int64)
        return np.stack([ids % 256, ids // 256 % 256, ids // 65536 % 256], axis=-1).astype(np.uint8)
    utils = types.ModuleType("panopticapi.utils")
    utils.rgb2id, utils.id2rgb = rgb2id, id2rgb
    sys.modules["panopticapi"] = types.ModuleType("panopticapi")
    sys.modules["panopticapi.utils"] = utils


def merge_case(pp_cls, rgb2id, out, processed, seed):
    """The official merge on the model's outputs made confident by hand: 12 queries pushed to
    things and stuff (with duplicate stuff classes), the others to "no object"; masks given smooth
    random blobs."""
    g = torch.Generator().manual_seed(seed)
    logits, masks = out["pred_logits"].clone(), out["pred_masks"].clone()
    n, (h4, w4) = logits.shape[1], masks.shape[-2:]
    queries = torch.randperm(n, generator=g)[:12]
    classes = [1, 1, 3, 18, 62, 184, 184, 187, 187, 199, 149, 119]
    others = [q for q in range(n) if q not in set(queries.tolist())]
    logits[0, others, -1] += 40.0                        # confident "no object", as in a trained model
    for q, c in zip(queries.tolist(), classes):
        logits[0, q, c] += 25.0
    blobs = torch.randn(1, n, max(2, h4 // 4), max(2, w4 // 4), generator=g) * 4.0
    masks = masks + torch.nn.functional.interpolate(blobs, size=(h4, w4), mode="bilinear")
    target = [(processed[0] * 3 // 2, processed[1] * 3 // 2), tuple(processed), (processed[0] // 3, processed[1] // 3)][seed % 3]
    pp = pp_cls({i: i <= 90 for i in range(250)}, threshold=0.85)
    res = pp({"pred_logits": logits, "pred_masks": masks, "pred_boxes": out["pred_boxes"]},
             torch.as_tensor([processed]), torch.as_tensor([target]))[0]
    ids = rgb2id(np.asarray(Image.open(io.BytesIO(res["png_string"])).convert("RGB")))
    kept = ((logits[0].softmax(-1).max(-1).values > 0.85) & (logits[0].argmax(-1) != 250)).nonzero().flatten()
    assert set(kept.tolist()) == set(queries.tolist()), "only the pushed queries may pass the threshold"
    order = sorted(queries.tolist())                     # store only the rows the merge reads
    return {"pred_logits": logits, "pred_masks": masks[:, order], "mask_queries": order,
            "processed_size": tuple(processed), "target_size": target,
            "id_map": torch.from_numpy(ids.astype(np.uint8)),  # ids < 256
            "segments": [(s["id"], s["category_id"], bool(s["isthing"]), int(s["area"])) for s in res["segments_info"]]}


def official_merge(pp_cls, rgb2id, out, processed, target, threshold):
    pp = pp_cls({i: i <= 90 for i in range(250)}, threshold=threshold)
    res = pp(out, torch.as_tensor([processed]), torch.as_tensor([target]))[0]
    ids = rgb2id(np.asarray(Image.open(io.BytesIO(res["png_string"])).convert("RGB")))
    segments = [(s["id"], s["category_id"], bool(s["isthing"]), int(s["area"])) for s in res["segments_info"]]
    return ids, segments


def several_segments(pp_cls, rgb2id, out, processed, target):
    """The highest threshold (keeping the top k real-class queries, k growing) whose official merge
    has MIN_SEGMENTS segments or more, things and stuff among them, and two kept queries of one
    stuff class (a stuff merge)."""
    probs = out["pred_logits"][0].softmax(-1)                   # (N, C+1)
    scores, labels = probs.max(-1)
    ranked = scores[labels != 250].sort(descending=True).values
    for k in range(3, len(ranked)):
        threshold = float(ranked[k])
        kept = labels[(labels != 250) & (scores > threshold)].tolist()
        stuff = [c for c in kept if c > 90]
        ids, segments = official_merge(pp_cls, rgb2id, out, processed, target, threshold)
        kinds = {thing for _, _, thing, _ in segments}
        if len(segments) >= MIN_SEGMENTS and kinds == {True, False} and len(set(stuff)) < len(stuff):
            return threshold, ids, segments
    raise RuntimeError("no threshold keeps several segments of both kinds with a stuff merge")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--official", required=True, help="folder of a facebookresearch/detr checkout")
    ap.add_argument("--out", default=str(REPO / "tests" / "data" / "official_outputs.pt"))
    args = ap.parse_args()
    sys.path[:0] = [args.official, str(REPO), str(REPO / "tests")]
    panopticapi_stub()
    import models.backbone as official_backbone
    official_backbone.is_main_process = lambda: False          # no ImageNet download
    from hubconf import _make_detr
    from models.segmentation import PostProcessPanoptic
    from official_reference import reference_model
    from panopticapi.utils import rgb2id

    import detr_viz
    from detr_viz.config import DETRConfig

    torch.set_grad_enabled(False)
    image = detr_viz.load_image(REPO / "assets" / "samples" / "nagasaki_boats.jpg")
    fixture = {}
    for name, case in CASES.items():
        cfg = DETRConfig(backbone=case["backbone"], dilation=case["dilation"])
        ours = reference_model(cfg)
        official = _make_detr(case["backbone"], dilation=case["dilation"], num_classes=250, mask=True).eval()
        official.load_state_dict(ours.state_dict(), strict=True)
        pre = detr_viz.preprocess(image, size=case["size"], max_size=None)
        out = official(pre.tensor)
        target = (pre.processed_size[0] * 2 + 1, pre.processed_size[1] * 2 - 3)
        threshold, ids, segments = several_segments(PostProcessPanoptic, rgb2id, out, pre.processed_size, target)
        fixture[name] = {"size": case["size"], "input": pre.tensor, "threshold": threshold,
                         "target_size": target,
                         "pred_logits": out["pred_logits"].clone(), "pred_boxes": out["pred_boxes"].clone(),
                         "pred_masks": out["pred_masks"], "id_map": torch.from_numpy(ids.astype(np.uint8)),  # ids < 256
                         "segments": segments}
        fixture[name]["merge_cases"] = [merge_case(PostProcessPanoptic, rgb2id, out, pre.processed_size, seed)
                                        for seed in range(case["merges"])]
        print(name, tuple(out["pred_masks"].shape), "threshold", round(threshold, 4), "segments", len(segments),
              [len(c["segments"]) for c in fixture[name]["merge_cases"]])
    torch.save(fixture, args.out)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
