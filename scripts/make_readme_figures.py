"""The README's toy-world figure: on a toy scene, the kept queries' box-attention maps and the mask
head's stages, drawn by the same library functions the app's pages 4, 6 and 7 use.

    python scripts/make_readme_figures.py [--scene assets/toyworld/scene1.png] [--out docs/toyworld_queries.jpg]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[1]

import detr_viz  # noqa: E402
from detr_viz.explain import step4_box_attention as attention  # noqa: E402
from detr_viz.explain import step6_upsampling as upsampling  # noqa: E402
from detr_viz.explain.common import display_image  # noqa: E402
from detr_viz.viz import load_font, panoptic_overlay  # noqa: E402


def stack(images, pad: int = 16, titles=None) -> Image.Image:
    """Images one under another on white, each with an optional title line."""
    font = load_font(22)
    th = 34 if titles else 0
    width = max(im.width for im in images) + 2 * pad
    height = sum(im.height + th + pad for im in images) + pad
    out = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(out)
    y = pad
    for i, im in enumerate(images):
        if titles:
            draw.text((pad, y), titles[i], fill=(10, 10, 10), font=font)
        out.paste(im, (pad, y + th))
        y += im.height + th + pad
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scene", default=str(REPO / "assets" / "toyworld" / "scene4.png"))
    ap.add_argument("--model", default="toyworld")
    ap.add_argument("--out", default=str(REPO / "docs" / "toyworld_queries.jpg"))
    ap.add_argument("--things", type=int, default=2, help="thing queries to show (plus one stuff query)")
    args = ap.parse_args()

    model = detr_viz.create_model(args.model, weights="official", device="cpu")
    t = detr_viz.trace(model, args.scene)
    pan = t.panoptic
    by_area = sorted(pan.segments, key=lambda s: -s["area"])
    kept = ([s["query"] for s in by_area if not s["isthing"]][:1]
            + [s["query"] for s in by_area if s["isthing"]][: args.things])
    labels = [f"q{q} {pan.segment_of_query(q)['name']}" for q in kept]
    grid = attention.maps_grid(t, kept, labels, width=1100, scale="query")
    grid = grid[0] if isinstance(grid, tuple) else grid
    rows = []
    for q in kept:
        pic = upsampling.sharpening_picture(upsampling.sharpening(t, q), tile=330, ncols=3)
        rows.append(pic)
    photo = display_image(t, 480)
    top = Image.new("RGB", (2 * photo.width + 20, photo.height), (255, 255, 255))
    top.paste(photo, (0, 0))
    top.paste(panoptic_overlay(photo, pan), (photo.width + 20, 0))
    fig = stack([top, grid] + rows,
                titles=[f"A toy scene and the '{args.model}' model's panoptic map ({len(pan.segments)} segments)",
                        "Step 4: box attention maps of kept queries (rows) x heads"]
                + [f"Step 6: the mask of {lab} taking shape, 1/16 -> 1/4" for lab in labels])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.save(out, quality=88) if out.suffix.lower() in (".jpg", ".jpeg") else fig.save(out)
    print(f"wrote {out} ({fig.width}x{fig.height}); segments: "
          + ", ".join(f"{s['name']} (q{s['query']}, {s['score']:.2f})" for s in pan.segments))
    return 0


if __name__ == "__main__":
    sys.exit(main())
