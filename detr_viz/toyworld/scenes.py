"""Synthetic panoptic scenes: textured background bands (stuff) and coloured shapes (things).

`generate_scene(seed, size)` is a pure function of its arguments: the same seed gives the same
image, id map and segments on every machine (numpy's PCG64 generator and PIL's rasteriser only).

Ground truth follows the COCO panoptic form: an id map (every pixel carries the id of exactly
one segment; ids start at 1, 0 is never used) and one dict per segment with `id`,
`category_id`, `name`, `isthing`, `area` (pixel count) and `bbox` [x, y, w, h] (pixel extent).

Seeds are split so that training, validation and the held-out test set never share a scene:
training uses seeds below `VAL_SEED0`, validation `VAL_SEED0 + i`, test `TEST_SEED0 + i`.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

from .categories import CATEGORY_ID, STUFF_NAMES, THING_NAMES, toyworld_categories

DEFAULT_SIZE = 160              # the training size of the shipped model
VAL_SEED0 = 10_000_000          # validation scenes: VAL_SEED0 + i
TEST_SEED0 = 20_000_000         # the held-out evaluation scenes: TEST_SEED0 + i (i < 200)


@dataclass(frozen=True)
class SceneSpec:
    """Knobs of the generator, as fractions of the image side so every size looks alike."""
    min_things: int = 1
    max_things: int = 6
    min_radius: float = 0.10        # shape radius (circumradius-like), fraction of the side
    max_radius: float = 0.20
    min_visible: float = 0.55       # an occluded shape keeps at least this fraction of its pixels
    min_thing_area: float = 0.012   # ... and at least this fraction of the image
    min_stuff_area: float = 0.03    # every background band keeps at least this fraction
    stuff_counts: tuple = (2, 3, 3, 4)   # number of background bands, drawn uniformly from this
    placement_tries: int = 25


SPEC = SceneSpec()


@dataclass
class Scene:
    """One generated scene and its panoptic ground truth."""
    seed: int
    image: Image.Image                  # RGB, size x size
    id_map: np.ndarray                  # (H, W) int32 segment ids (>= 1)
    segments: list = field(default_factory=list)   # dicts: id, category_id, name, isthing, area, bbox

    @property
    def size(self) -> int:
        return self.id_map.shape[0]

    def to_json(self) -> dict:
        """The COCO-panoptic-like annotation of this scene (ids refer to `id_map`)."""
        return {"seed": self.seed, "height": self.id_map.shape[0], "width": self.id_map.shape[1],
                "segments_info": [dict(s) for s in self.segments]}

    def save(self, stem) -> None:
        """Writes `<stem>.png` (image), `<stem>_ids.png` (16-bit id map) and `<stem>.json`."""
        stem = str(stem)
        self.image.save(stem + ".png")
        Image.fromarray(self.id_map.astype(np.uint16)).save(stem + "_ids.png")
        with open(stem + ".json", "w") as f:
            json.dump(self.to_json(), f, indent=1)


# ---- textures ---------------------------------------------------------------------------------

def _smooth_noise(rng, size: int, cells: int, aspect=(1, 1)) -> np.ndarray:
    """Value noise in [0, 1]: a (cells*ay, cells*ax) random grid, bicubically resized to (size, size)."""
    grid = rng.random((max(2, cells * aspect[0]), max(2, cells * aspect[1]))).astype(np.float32)
    img = Image.fromarray(grid, mode="F").resize((size, size), Image.BICUBIC)
    return np.clip(np.asarray(img), 0.0, 1.0)


def _jitter(rng, rgb, amount=0.08) -> np.ndarray:
    """A base colour with a small random per-scene shift."""
    return np.clip(np.asarray(rgb, np.float32) + rng.uniform(-amount, amount, 3), 0, 1)


def _texture(rng, name: str, size: int, y0: int = 0, y1: int | None = None) -> np.ndarray:
    """(y1 - y0, size, 3) float texture in [0, 1] of one background class, rows y0..y1 of the image."""
    y1 = size if y1 is None else y1
    rows = slice(y0, y1)
    n = y1 - y0
    fine = rng.random((n, size), dtype=np.float32)[..., None]                  # (n, S, 1) speckle
    yy = (np.arange(y0, y1, dtype=np.float32) / size)[:, None, None]           # (n, 1, 1)
    if name == "sky":
        top, bottom = _jitter(rng, (0.35, 0.58, 0.92)), _jitter(rng, (0.68, 0.82, 0.98))
        clouds = _smooth_noise(rng, size, 4)[rows] * 0.6 + _smooth_noise(rng, size, 9)[rows] * 0.4
        cover = np.clip((clouds - 0.5) * 3.0, 0, 1)[..., None]                  # soft white clouds
        tex = (top * (1 - yy) + bottom * yy) * (1 - 0.8 * cover)                # vertical gradient
        return tex + (0.97 * 0.8 * cover + (fine - 0.5) * 0.02)
    if name == "grass":
        base = _jitter(rng, (0.22, 0.52, 0.16))
        patches = _smooth_noise(rng, size, 5)[rows]
        blades = _smooth_noise(rng, size, 2, aspect=(3, 40))[rows]              # thin vertical streaks
        shade = (0.75 + 0.35 * patches) * (0.8 + 0.35 * blades)
        return base * shade[..., None] + (fine - 0.5) * 0.12
    if name == "water":
        base = _jitter(rng, (0.12, 0.32, 0.62))
        xx = np.linspace(0.0, 1.0, size, dtype=np.float32)[None, :]
        period = rng.uniform(0.035, 0.06)
        wobble = _smooth_noise(rng, size, 3)[rows]
        waves = np.sin(2 * np.pi * (yy[..., 0] / period + 1.5 * wobble + 0.3 * np.sin(6 * xx)))
        glint = np.clip(waves - 0.7, 0, 1) * 0.6                                 # bright crests
        return base * (0.85 + 0.12 * waves)[..., None] + (glint[..., None] + (fine - 0.5) * 0.04)
    if name == "road":
        base = _jitter(rng, (0.38, 0.38, 0.40), 0.05)
        stains = _smooth_noise(rng, size, 6)[rows]
        speckle = (fine > 0.85) * np.float32(0.12) - (fine < 0.1) * np.float32(0.1)
        return base * (0.85 + 0.3 * stains)[..., None] + (speckle + (fine - 0.5) * 0.08)
    raise ValueError(f"unknown background {name!r}")


# ---- layout -----------------------------------------------------------------------------------

def _wavy_curve(rng, size: int, base: float) -> np.ndarray:
    """(W,) y coordinate of an irregular border: tilt + a few sines + a jagged smooth noise."""
    x = np.arange(size, dtype=np.float32) / size
    y = base + rng.uniform(-0.25, 0.25) * (x - 0.5)
    for f in (1, 2, 3, 5):
        y = y + rng.uniform(0.0, 0.05) / f * np.sin(2 * np.pi * (f * x + rng.random()))
    jag = np.asarray(Image.fromarray(rng.random((1, 24)).astype(np.float32), mode="F")
                     .resize((size, 1), Image.BICUBIC))[0]
    return (y + (jag - 0.5) * 0.04) * size


def _stuff_layout(rng, size: int, spec: SceneSpec):
    """Background bands with irregular borders: (H, W) band index and the band class names."""
    k = int(rng.choice(spec.stuff_counts))
    names = [str(n) for n in rng.permutation(STUFF_NAMES)[:k]]
    if "sky" in names:                      # sky, when present, is the top band
        names.remove("sky")
        names.insert(0, "sky")
    cuts = np.sort(rng.uniform(0.15, 0.85, k - 1))
    while k > 2 and np.min(np.diff(cuts)) < 0.18:      # bands not too thin
        cuts = np.sort(rng.uniform(0.15, 0.85, k - 1))
    yy = np.arange(size, dtype=np.float32)[:, None]    # (H, 1)
    band = np.zeros((size, size), np.int32)
    for c in cuts:
        band += (yy > _wavy_curve(rng, size, float(c))[None, :]).astype(np.int32)
    return band, names


def _shape_polygon(kind: str, cx: float, cy: float, r: float, angle: float):
    """Vertices of a square, triangle or 5-point star (None for a circle)."""
    if kind == "square":
        radii, n = [r * 0.92], 4
    elif kind == "triangle":
        radii, n = [r * 1.12], 3
    elif kind == "star":
        radii, n = [r * 1.18, r * 0.5], 5
    else:
        return None
    pts = []
    for i in range(n * len(radii)):
        a = angle + 2 * np.pi * i / (n * len(radii))
        rad = radii[i % len(radii)]
        pts.append((cx + rad * math.cos(a), cy + rad * math.sin(a)))
    return pts


def _shape_mask(kind: str, size: int, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    """(H, W) bool mask of one shape, rasterised by PIL."""
    img = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(img)
    if kind == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=1)
    else:
        draw.polygon(_shape_polygon(kind, cx, cy, r, angle), fill=1)
    return np.asarray(img, dtype=bool)


def _random_colour(rng) -> np.ndarray:
    """A saturated random colour (HSV with s, v >= 0.45)."""
    h, s, v = rng.random(), rng.uniform(0.45, 1.0), rng.uniform(0.45, 1.0)
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i], np.float32)


def _place_things(rng, size: int, spec: SceneSpec):
    """Shapes drawn in order (later ones occlude); a placement that would leave any shape with
    too few visible pixels is retried. Returns [(kind, colour, full_mask)] and (H, W) owner map
    (index into the list, -1 = background)."""
    n = int(rng.integers(spec.min_things, spec.max_things + 1))
    owner = np.full((size, size), -1, np.int32)
    things = []
    for _ in range(n):
        kind = str(rng.choice(THING_NAMES))
        colour = _random_colour(rng)
        for _ in range(spec.placement_tries):
            r = rng.uniform(spec.min_radius, spec.max_radius) * size
            cx, cy = rng.uniform(0.5 * r, size - 0.5 * r, 2)
            mask = _shape_mask(kind, size, cx, cy, r, rng.uniform(0, 2 * np.pi))
            trial = np.where(mask, len(things), owner)
            if _visible_enough(trial, things + [(kind, colour, mask)], spec, size):
                owner = trial
                things.append((kind, colour, mask))
                break
    return things, owner


def _visible_enough(owner, things, spec: SceneSpec, size: int) -> bool:
    counts = np.bincount(owner[owner >= 0], minlength=len(things))
    for i, (_, _, mask) in enumerate(things):
        full = int(mask.sum())
        if full == 0 or counts[i] < spec.min_visible * full or counts[i] < spec.min_thing_area * size * size:
            return False
    return True


def _paint_things(rng, img: np.ndarray, things, owner) -> None:
    """Flat colour with a soft light gradient, fine noise and a darker 1-px rim, in place."""
    size = img.shape[0]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    for i, (_, colour, _) in enumerate(things):
        vis = owner == i
        if not vis.any():
            continue
        light = 1.0 + 0.18 * ((0.5 - xx[vis]) + (0.5 - yy[vis]))
        img[vis] = colour[None] * light[:, None]
        edge = vis & ~_erode(vis)
        img[edge] = colour[None] * 0.55
    img += (rng.random(img.shape[:2], dtype=np.float32)[..., None] - 0.5) * 0.03


def _erode(m: np.ndarray) -> np.ndarray:
    """4-neighbour binary erosion (image border counts as outside)."""
    p = np.pad(m, 1, constant_values=False)
    return p[1:-1, 1:-1] & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]


# ---- ground truth -----------------------------------------------------------------------------

def _segment(seg_id: int, name: str, isthing: bool, mask: np.ndarray) -> dict:
    ys, xs = np.nonzero(mask)
    x0, y0 = int(xs.min()), int(ys.min())
    return {"id": seg_id, "category_id": CATEGORY_ID[name], "name": name, "isthing": isthing,
            "area": int(mask.sum()), "bbox": [x0, y0, int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1]}


def generate_scene(seed: int, size: int = DEFAULT_SIZE, spec: SceneSpec = SPEC) -> Scene:
    """One scene, a pure function of (seed, size, spec)."""
    rng = np.random.default_rng([int(seed), int(size)])
    min_stuff = spec.min_stuff_area * size * size
    while True:                              # redraw the layout until every band stays visible
        band, names = _stuff_layout(rng, size, spec)
        things, owner = _place_things(rng, size, spec)
        bg = owner < 0
        if all((bg & (band == k)).sum() >= min_stuff for k in range(len(names))):
            break
    img = np.zeros((size, size, 3), np.float32)
    id_map = np.zeros((size, size), np.int32)
    segments = []
    for k, name in enumerate(names):         # stuff first: ids 1..k
        m = bg & (band == k)
        rows = np.nonzero(m.any(axis=1))[0]
        y0, y1 = int(rows[0]), int(rows[-1]) + 1
        img[y0:y1][m[y0:y1]] = _texture(rng, name, size, y0, y1)[m[y0:y1]]
        segments.append(_segment(len(segments) + 1, name, False, m))
        id_map[m] = segments[-1]["id"]
    _paint_things(rng, img, things, owner)
    for i, (kind, _, _) in enumerate(things):
        m = owner == i
        segments.append(_segment(len(segments) + 1, kind, True, m))
        id_map[m] = segments[-1]["id"]
    image = Image.fromarray((np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8), "RGB")
    return Scene(int(seed), image, id_map, segments)


def sample_scenes(n: int, seed: int = 0, size: int = DEFAULT_SIZE) -> list[Scene]:
    """n scenes with seeds seed, seed+1, ..., seed+n-1."""
    return [generate_scene(seed + i, size) for i in range(n)]


def validation_scenes(n: int, size: int = DEFAULT_SIZE) -> list[Scene]:
    """The fixed validation set (for logging and threshold choice during development)."""
    return sample_scenes(n, VAL_SEED0, size)


def test_scenes(n: int = 200, size: int = DEFAULT_SIZE) -> list[Scene]:
    """The fixed held-out evaluation set (never used for training or for choosing settings)."""
    return sample_scenes(n, TEST_SEED0, size)


test_scenes.__test__ = False     # not a pytest test


def categories():
    """The category table of the toy world (same object the app gets for `categories="toyworld"`)."""
    return toyworld_categories()
