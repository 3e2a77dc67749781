"""The what-if experiment of docs/whatif.md: which heads carry a thing's attention in the toy model.

    python scripts/whatif_example.py [--out docs/whatif_example.jpg]

Traces toy scene 3 with the shipped toy model, then for its star: the attention budget per head,
the mask with head 7 off, with heads 0-6 off, with attention only and with features only; the
merge without the star; the photo with the star greyed out. Prints the numbers the doc quotes.
"""
from __future__ import annotations

import argparse
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(REPO / "docs" / "whatif_example.jpg"))
    ap.add_argument("--scene", default=str(REPO / "assets" / "toyworld" / "scene3.png"))
    args = ap.parse_args(argv)
    import detr_viz
    from detr_viz import viz, whatif
    from detr_viz.whatif import pictures as P

    model = detr_viz.create_model("toyworld", weights="official", device="cpu")
    t = detr_viz.trace(model, args.scene)
    M = t.config.nheads
    print("kept:", [(s["query"], s["name"]) for s in t.panoptic.segments])
    star = next(s["query"] for s in t.panoptic.segments if s["name"] == "star")
    budget = t["bbox_attention"][0, star].flatten(1).sum(1)               # (M,) share of the budget per head
    print("star query", star, "budget per head:", [round(float(v), 3) for v in budget])
    for seg in t.panoptic.segments:                                       # the head holding each query's budget
        b = t["bbox_attention"][0, seg["query"]].flatten(1).sum(1)
        print(f"  query {seg['query']:2d} {seg['name']:9s} head {int(b.argmax())} holds {float(b.max()):.1%}")
    runs = {"head 7 off": dict(heads_off=[7]), "heads 0-6 off": dict(heads_off=range(7)),
            "attention only": dict(features_off=True), "features only": dict(attention_off=True)}
    results = {name: whatif.mask(t, star, **kw) for name, kw in runs.items()}
    for name, r in results.items():
        print(f"{name:15s} IoU {r.iou:.2f}  {r.sentence}")
    dropped = whatif.merge(t, drop_queries=[star])
    print(dropped.sentence)
    box = (60, 0, 124, 49)
    occ = whatif.occlude(t, box)
    print(occ.sentence)

    w = 150
    heads = P.head_maps(t["bbox_attention"][0, star], w)
    row1 = heads + [P.mask_overlay(t, results["head 7 off"].original, w)]
    labels1 = [f"head {h}: {float(budget[h]):.0%}" for h in range(M)] + ["traced mask"]
    row2 = [P.mask_overlay(t, results[n].changed, w) for n in runs]
    labels2 = [f"{n}: IoU {results[n].iou:.2f}" for n in runs]
    row2 += [viz.fit_width(viz.panoptic_overlay(t.image, t.panoptic), w),
             viz.fit_width(viz.panoptic_overlay(t.image, dropped.changed), w),
             viz.fit_width(occ.image, w), viz.fit_width(viz.panoptic_overlay(t.image, occ.changed), w),
             P.owner_change_picture(occ, w)]
    labels2 += ["panoptic", "merge without star", "star greyed out", "panoptic after", "changed owner"]
    pic = viz.grid(row1 + row2, ncols=M + 1, labels=labels1 + labels2, label_height=16)
    pic.save(args.out, quality=85)
    print("wrote", args.out, pic.size, Path(args.out).stat().st_size, "bytes")


if __name__ == "__main__":
    main()
