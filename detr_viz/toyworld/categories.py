"""The toy world's category table: 4 shape classes (things) and 4 background classes (stuff).

The class index of the model IS the category id (0..7, contiguous); index 8 is "no object".
"""
from __future__ import annotations

from functools import lru_cache

from ..categories import Category, CategoryTable

# (id, name, isthing, display colour, supercategory). Display colours are for the app's
# overlays only; the shapes in the scenes have random colours.
TOYWORLD_CATEGORIES = (
    (0, "circle", True, (230, 25, 75), "shape"),
    (1, "square", True, (255, 225, 25), "shape"),
    (2, "triangle", True, (245, 130, 48), "shape"),
    (3, "star", True, (145, 30, 180), "shape"),
    (4, "sky", False, (120, 180, 255), "background"),
    (5, "grass", False, (60, 180, 75), "background"),
    (6, "water", False, (0, 90, 200), "background"),
    (7, "road", False, (128, 128, 128), "background"),
)

THING_NAMES = tuple(name for _, name, isthing, _, _ in TOYWORLD_CATEGORIES if isthing)
STUFF_NAMES = tuple(name for _, name, isthing, _, _ in TOYWORLD_CATEGORIES if not isthing)
CATEGORY_ID = {name: cid for cid, name, _, _, _ in TOYWORLD_CATEGORIES}
NUM_CLASSES = len(TOYWORLD_CATEGORIES)


@lru_cache(maxsize=None)
def toyworld_categories() -> CategoryTable:
    """The table for models whose config says `categories="toyworld"` (num_classes = 8)."""
    cats = [Category(cid, name, isthing, color, sup) for cid, name, isthing, color, sup in TOYWORLD_CATEGORIES]
    return CategoryTable("toyworld", cats, NUM_CLASSES)
