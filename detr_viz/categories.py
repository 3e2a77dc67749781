"""Category tables: what each class index of the class head means (name, thing/stuff, colour).

The tables are data (`detr_viz/data/*.json`, COCO-panoptic format), as torchvision's `_meta.py`
is; this module imports nothing else of the project. A model config names its table
(`DETRConfig.categories`), and `get_categories(spec, num_classes)` reads it:

- "coco": the official checkpoints. The class index IS the COCO panoptic category id (1..200,
  with gaps); indices no COCO category uses get a readable "unused id N" label, and the last
  index is "no object". Thing/stuff follows the official hub rule `is_thing = index <= 90`.
- "toyworld": the toy world's 4 shapes (things) and 4 backgrounds (stuff), ids 0..7.
- "generic": a model of your own without a categories file: classes are named `class 17`, and
  thing/stuff is a guess (every class a thing; `table.isthing_guessed` says so).
- a path to a JSON file: a COCO-panoptic categories file (a list, or a dict with "categories";
  each entry `id`, `name`, `isthing`, optional `color`), or a Hugging Face `config.json` whose
  `id2label` gives the names (thing/stuff then guessed, unless the names are COCO panoptic's).
"""
from __future__ import annotations

import colorsys
import json
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path

DATA = Path(__file__).parent / "data"
GENERIC = "generic"


class CategoriesError(ValueError):
    """A categories file that cannot be used; the message says what is wrong and where."""


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
    """Maps class indices 0..num_classes (the last = no object) to `Category`.

    `source` says where the table came from; `isthing_guessed` is True when thing/stuff is a
    guess (no categories file was given), so that the app can say so.
    """

    def __init__(self, name: str, categories: list[Category], num_classes: int, thing_rule=None,
                 source: str = "", isthing_guessed: bool = False):
        self.name = name
        self.num_classes = num_classes
        self._by_id = {c.id: c for c in categories}
        self._thing_rule = thing_rule
        self.source = source or name
        self.isthing_guessed = isthing_guessed

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


# ---- reading COCO-panoptic category lists --------------------------------------------------------
def _color(raw, where: str) -> tuple[int, int, int] | None:
    if raw is None:
        return None
    if (not isinstance(raw, (list, tuple)) or len(raw) != 3
            or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in raw)):
        raise CategoriesError(f"{where}: 'color' must be three integers 0..255, e.g. [220, 20, 60]; got {raw!r}")
    return tuple(raw)


def _category(entry, where: str) -> Category:
    """One `{"id", "name", "isthing", "color"?, "supercategory"?}` entry, checked."""
    if not isinstance(entry, dict):
        raise CategoriesError(f"{where}: each category must be an object with id, name and isthing; got {entry!r}")
    missing = [k for k in ("id", "name", "isthing") if k not in entry]
    if missing:
        raise CategoriesError(f"{where}: missing {', '.join(missing)} (each category needs id, name and isthing)")
    cid, name, isthing = entry["id"], entry["name"], entry["isthing"]
    if not isinstance(cid, int) or isinstance(cid, bool) or cid < 0:
        raise CategoriesError(f"{where}: 'id' must be a whole number >= 0; got {cid!r}")
    if not isinstance(name, str) or not name.strip():
        raise CategoriesError(f"{where}: 'name' must be a non-empty text; got {name!r}")
    if isthing not in (0, 1):                                 # True/False are 1/0
        raise CategoriesError(f"{where}: 'isthing' must be 1 (thing) or 0 (stuff); got {isthing!r}")
    color = _color(entry.get("color"), where) or _fallback_color(cid)
    return Category(cid, name.strip(), bool(isthing), color, str(entry.get("supercategory", "")))


def parse_categories(raw, num_classes: int | None, where: str) -> list[Category]:
    """The categories of a COCO-panoptic list (or a dict with "categories"), checked against the
    model's class count (ids must be below `num_classes`)."""
    entries = raw.get("categories") if isinstance(raw, dict) else raw
    if not isinstance(entries, list) or not entries:
        raise CategoriesError(f"{where}: expected a JSON list of categories, or an object with a "
                              "'categories' list (COCO panoptic format), or a config.json with 'id2label'")
    cats = [_category(e, f"{where}, category #{i}") for i, e in enumerate(entries)]
    ids = [c.id for c in cats]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise CategoriesError(f"{where}: category id {dup[0]} appears more than once")
    if num_classes is not None and max(ids) >= num_classes:
        raise CategoriesError(
            f"{where}: category id {max(ids)} is not a class of this model, which has {num_classes} classes "
            f"(ids 0..{num_classes - 1}). Use the categories file of the dataset the model was trained on.")
    return cats


def _read_json(path: Path, where: str):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise CategoriesError(f"Cannot read the categories file {path}: {e}") from e
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CategoriesError(f"{where} is not valid JSON ({e}). Give a COCO-panoptic categories file "
                              "or a Hugging Face config.json.") from e


# ---- the tables ----------------------------------------------------------------------------------
@cache
def _data_table(file_name: str) -> tuple[Category, ...]:
    path = DATA / file_name
    return tuple(parse_categories(json.loads(path.read_text()), None, str(path)))


@cache
def coco_categories(num_classes: int = 250) -> CategoryTable:
    return CategoryTable("coco", list(_data_table("coco-panoptic-categories.json")), num_classes,
                         thing_rule=lambda i: i <= 90, source="COCO panoptic (official)")


@cache
def toyworld_categories() -> CategoryTable:
    """The table for models whose config says `categories="toyworld"` (num_classes = 8)."""
    cats = list(_data_table("toyworld-categories.json"))
    return CategoryTable("toyworld", cats, len(cats), source="toy world (shipped)")


@cache
def generic_categories(num_classes: int) -> CategoryTable:
    """Classes named `class 17`, every one guessed to be a thing (no categories file given)."""
    cats = [Category(i, f"class {i}", True, _fallback_color(i)) for i in range(num_classes)]
    return CategoryTable(GENERIC, cats, num_classes, source="no categories file: generic names",
                         isthing_guessed=True)


def categories_from_id2label(id2label: dict, num_classes: int, where: str) -> CategoryTable:
    """A table from a Hugging Face `id2label` ({"17": "dog", ...}). Its names are used; thing/stuff
    is not in id2label, so it is COCO's when the names are COCO panoptic's, else guessed (things)."""
    try:
        names = {int(k): str(v) for k, v in id2label.items()}
    except (AttributeError, TypeError, ValueError) as e:
        raise CategoriesError(f"{where}: 'id2label' must map class numbers to names, e.g. {{\"0\": \"cat\"}}") from e
    if names and max(names) >= num_classes:
        raise CategoriesError(f"{where}: id2label has class {max(names)}, but the model has {num_classes} classes")
    coco = coco_categories(num_classes)
    if num_classes == 250 and all(names.get(c.id) == c.name for c in coco.used()):
        return CategoryTable("coco", coco.used(), num_classes, thing_rule=lambda i: i <= 90,
                             source=f"id2label of {where} (COCO panoptic names)")
    cats = [Category(i, n, True, _fallback_color(i)) for i, n in sorted(names.items())]
    return CategoryTable(Path(where).name, cats, num_classes, source=f"id2label of {where}", isthing_guessed=True)


def load_categories(path, num_classes: int) -> CategoryTable:
    """The table in a categories file (COCO-panoptic list/dict, or config.json with id2label)."""
    path = Path(path).expanduser().absolute()
    st = path.stat() if path.is_file() else None
    if st is None:
        raise CategoriesError(f"The categories file {path} does not exist.")
    return _load_categories(str(path), st.st_mtime_ns, st.st_size, num_classes)


@lru_cache(maxsize=32)
def _load_categories(path: str, _mtime_ns: int, _size: int, num_classes: int) -> CategoryTable:
    raw = _read_json(Path(path), path)
    if isinstance(raw, dict) and "id2label" in raw and "categories" not in raw:
        return categories_from_id2label(raw["id2label"], num_classes, path)
    cats = parse_categories(raw, num_classes, path)
    return CategoryTable(Path(path).name, cats, num_classes, source=f"categories file {path}")


def get_categories(name: str, num_classes: int) -> CategoryTable:
    """The table named by a model config's `categories` field (see the module doc)."""
    if name == "coco":
        return coco_categories(num_classes)
    if name == "toyworld":
        return toyworld_categories()
    if name == GENERIC:
        return generic_categories(num_classes)
    if name.endswith(".json") or Path(name).is_file():
        return load_categories(name, num_classes)
    raise ValueError(f"unknown category table {name!r}: use 'coco', 'toyworld', 'generic' or a JSON file")
