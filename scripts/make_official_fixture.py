"""Record the official DETR code's outputs on our reference weights (tests/data/official_outputs.pt).

    python scripts/make_official_fixture.py --official /path/to/facebookresearch-detr-checkout

Needs a checkout of facebookresearch/detr (not part of this repo; nothing of it is copied here) and
panopticapi's rgb2id importable. The reference weights come from tests/official_reference.py; the
input is a sample photo preprocessed by detr_viz. For each config it stores the official model's
outputs and the official PostProcessPanoptic result at a threshold that keeps about 10 queries.
"""
import argparse
import io
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
CASES = {"r50": dict(backbone="resnet50", dilation=False, size=128),
         "r50-dc5": dict(backbone="resnet50", dilation=True, size=96)}


def merge_case(pp_cls, rgb2id, out, processed, seed):
    """The official merge on the model's outputs made confident by hand: 12 queries pushed to
    things and stuff (with duplicate stuff classes), masks given smooth random blobs."""
    g = torch.Generator().manual_seed(seed)
    logits, masks = out["pred_logits"].clone(), out["pred_masks"].clone()
    n, (h4, w4) = logits.shape[1], masks.shape[-2:]
    queries = torch.randperm(n, generator=g)[:12]
    classes = [1, 1, 3, 18, 62, 184, 184, 187, 187, 199, 149, 119]
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--official", required=True, help="folder of a facebookresearch/detr checkout")
    ap.add_argument("--out", default=str(REPO / "tests" / "data" / "official_outputs.pt"))
    args = ap.parse_args()
    sys.path[:0] = [args.official, str(REPO), str(REPO / "tests")]
    import models.backbone as official_backbone
    official_backbone.is_main_process = lambda: False          # no ImageNet download
    from hubconf import _make_detr
    from models.segmentation import PostProcessPanoptic
    from panopticapi.utils import rgb2id

    import detr_viz
    from detr_viz.config import DETRConfig
    from official_reference import reference_model

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
        scores = out["pred_logits"][0].softmax(-1)[:, :-1].max(-1).values
        threshold = float(scores.sort(descending=True).values[10])   # keeps the top 10
        target = (pre.processed_size[0] * 2 + 1, pre.processed_size[1] * 2 - 3)
        pp_cls = PostProcessPanoptic
        pp = PostProcessPanoptic({i: i <= 90 for i in range(250)}, threshold=threshold)
        res = pp(out, torch.as_tensor([pre.processed_size]), torch.as_tensor([target]))[0]
        ids = rgb2id(np.asarray(Image.open(io.BytesIO(res["png_string"])).convert("RGB")))
        fixture[name] = {"size": case["size"], "input": pre.tensor, "threshold": threshold,
                         "target_size": target,
                         "pred_logits": out["pred_logits"].clone(), "pred_boxes": out["pred_boxes"].clone(),
                         "pred_masks": out["pred_masks"], "id_map": torch.from_numpy(ids.astype(np.uint8)),  # ids < 256
                         "segments": [(s["id"], s["category_id"], bool(s["isthing"]), int(s["area"]))
                                      for s in res["segments_info"]]}
        fixture[name]["merge_cases"] = [merge_case(pp_cls, rgb2id, out, pre.processed_size, seed)
                                        for seed in range(6)]
        print(name, tuple(out["pred_masks"].shape), "segments", len(fixture[name]["segments"]),
              [len(c["segments"]) for c in fixture[name]["merge_cases"]])
    torch.save(fixture, args.out)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
