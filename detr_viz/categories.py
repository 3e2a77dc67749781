"""Category tables: what each class index of the class head means (name, thing/stuff, colour).

For the official checkpoints the class index IS the COCO panoptic category id (1..200, with
gaps); indices that no COCO category uses get a readable "unused id N" label, and the last index
is "no object". Thing/stuff follows the official hub rule `is_thing = index <= 90`.
"""
from __future__ import annotations

import colorsys
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

DATA = Path(__file__).parent / "data"


@dataclass(frozen=True)
class Category:
    id: int
    name: str
    isthing: bool
    color: tuple[int, int, int]
    supercategory: str = ""
    used: bool = True           # False for class indices no training target ever had


def _fallback_color(i: int) -> tuple[int, int, int]:
    h = (i * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(h, 0.55, 0.85)
    return int(r * 255), int(g * 255), int(b * 255)


class CategoryTable:
    """Maps class indices 0..num_classes (the last = no object) to `Category`."""

    def __init__(self, name: str, categories: list[Category], num_classes: int, thing_rule=None):
        self.name = name
        self.num_classes = num_classes
        self._by_id = {c.id: c for c in categories}
        self._thing_rule = thing_rule

    @property
    def no_object(self) -> int:
        return self.num_classes

    def __getitem__(self, idx: int) -> Category:
        idx = int(idx)
        if idx in self._by_id:
            return self._by_id[idx]
        if idx == self.num_classes:
            return Category(idx, "no object", False, (0, 0, 0), "", used=False)
        isthing = bool(self._thing_rule(idx)) if self._thing_rule else False
        return Category(idx, f"unused id {idx}", isthing, _fallback_color(idx), "", used=False)

    def is_thing(self, idx: int) -> bool:
        """The rule the merge uses (for COCO: the official `index <= 90`)."""
        if self._thing_rule is not None:
            return bool(self._thing_rule(int(idx)))
        return self[idx].isthing

    def label(self, idx: int) -> str:
        return self[idx].name

    def used(self) -> list[Category]:
        return sorted(self._by_id.values(), key=lambda c: c.id)

    def __repr__(self):
        return f"CategoryTable({self.name!r}, {len(self._by_id)} categories, {self.num_classes} classes + no object)"


@lru_cache(maxsize=None)
def coco_categories(num_classes: int = 250) -> CategoryTable:
    raw = json.loads((DATA / "coco-panoptic-categories.json").read_text())
    cats = [Category(c["id"], c["name"], bool(c["isthing"]), tuple(c["color"]), c["supercategory"]) for c in raw]
    return CategoryTable("coco", cats, num_classes, thing_rule=lambda i: i <= 90)


def get_categories(name: str, num_classes: int) -> CategoryTable:
    """The table named by a model config's `categories` field."""
    if name == "coco":
        return coco_categories(num_classes)
    if name == "toyworld":
        from .toyworld.categories import toyworld_categories
        return toyworld_categories()
    raise ValueError(f"unknown category table {name!r}")
