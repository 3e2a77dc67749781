"""The toy world's category table: 4 shape classes (things) and 4 background classes (stuff).

The table itself is data in the core (`detr_viz/data/toyworld-categories.json`, read by
`detr_viz.categories.toyworld_categories`); this module only names its parts for the scene
generator and the trainer. The class index of the model IS the category id (0..7, contiguous);
index 8 is "no object". Display colours are for the app's overlays only; the shapes in the
scenes have random colours.
"""
from __future__ import annotations

from ..categories import toyworld_categories

_CATS = toyworld_categories().used()
# (id, name, isthing, display colour, supercategory)
TOYWORLD_CATEGORIES = tuple((c.id, c.name, c.isthing, c.color, c.supercategory) for c in _CATS)
THING_NAMES = tuple(c.name for c in _CATS if c.isthing)
STUFF_NAMES = tuple(c.name for c in _CATS if not c.isthing)
CATEGORY_ID = {c.name: c.id for c in _CATS}
NUM_CLASSES = len(_CATS)

__all__ = ["CATEGORY_ID", "NUM_CLASSES", "STUFF_NAMES", "THING_NAMES", "TOYWORLD_CATEGORIES", "toyworld_categories"]
