"""Category tables as data (issue 10.7) and categories files of your own (issue 14)."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from detr_viz import categories as C

PKG = Path(C.__file__).parent


def project_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("detr_viz")):
            out.add("." * node.level + (node.module or ""))
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("detr_viz")}
    return out


def test_core_tables_import_nothing_of_the_project():
    assert project_imports(PKG / "categories.py") == set()
    assert project_imports(PKG / "toyworld" / "categories.py") == {"..categories"}


def test_tables_are_read_from_data():
    coco = C.get_categories("coco", 250)
    assert coco[1].name == "person" and coco.is_thing(90) and not coco.is_thing(91)
    assert coco[250].name == "no object" and coco[12].name == "unused id 12"
    toy = C.get_categories("toyworld", 8)
    raw = json.loads((PKG / "data" / "toyworld-categories.json").read_text())
    assert [(c.id, c.name, c.isthing, list(c.color)) for c in toy.used()] == \
        [(r["id"], r["name"], bool(r["isthing"]), r["color"]) for r in raw]
    assert not coco.isthing_guessed and not toy.isthing_guessed


def test_generic_table_names_classes_and_says_it_guesses():
    t = C.get_categories("generic", 48)
    assert t[17].name == "class 17" and t.isthing_guessed and t[48].name == "no object"
    assert "no categories file" in t.source


@pytest.mark.parametrize("wrap", [lambda cats: cats, lambda cats: {"categories": cats, "info": {}}])
def test_coco_panoptic_categories_file(tmp_path, wrap):
    cats = [{"id": 0, "name": "excavator", "isthing": 1, "color": [250, 200, 0]},
            {"id": 1, "name": "gravel", "isthing": 0},
            {"id": 5, "name": "worker", "isthing": True, "supercategory": "person"}]
    path = tmp_path / "cats.json"
    path.write_text(json.dumps(wrap(cats)))
    t = C.get_categories(str(path), 6)
    assert (t[0].name, t[0].isthing, t[0].color) == ("excavator", True, (250, 200, 0))
    assert (t[1].name, t[1].isthing) == ("gravel", False) and len(t[1].color) == 3
    assert t.is_thing(5) and not t.is_thing(1) and t[3].name == "unused id 3" and t[6].name == "no object"
    assert str(path) in t.source and not t.isthing_guessed


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    ('{"images": []}', "expected a JSON list of categories"),
    ('[{"id": 0, "name": "a"}]', "missing isthing"),
    ('[{"id": 0, "name": "a", "isthing": 2}]', "'isthing' must be 1"),
    ('[{"id": -1, "name": "a", "isthing": 1}]', "'id' must be a whole number"),
    ('[{"id": 0, "name": "a", "isthing": 1, "color": [1, 2]}]', "'color' must be three integers"),
    ('[{"id": 0, "name": "a", "isthing": 1}, {"id": 0, "name": "b", "isthing": 0}]', "appears more than once"),
    ('[{"id": 9, "name": "a", "isthing": 1}]', "has 6 classes"),
    ('{"id2label": {"7": "x"}}', "id2label has class 7"),
])
def test_malformed_categories_file_is_a_clear_error(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(C.CategoriesError, match=message) as ei:
        C.get_categories(str(path), 6)
    assert str(path) in str(ei.value)


def test_missing_categories_file(tmp_path):
    with pytest.raises(C.CategoriesError, match="does not exist"):
        C.load_categories(tmp_path / "nope.json", 6)


def test_id2label_names_guess_thing_stuff_unless_coco(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"id2label": {"0": "crane", "1": "sky"}, "d_model": 256}))
    t = C.get_categories(str(path), 3)
    assert t[0].name == "crane" and t[1].name == "sky" and t.isthing_guessed and t[2].name == "unused id 2"
    coco = C.coco_categories(250)
    path.write_text(json.dumps({"id2label": {str(c.id): c.name for c in coco.used()}}))
    t = C.get_categories(str(path), 250)
    assert not t.isthing_guessed and t.is_thing(90) and not t.is_thing(92) and t[1].name == "person"


def test_file_table_follows_the_file(tmp_path):
    path = tmp_path / "cats.json"
    path.write_text('[{"id": 0, "name": "a", "isthing": 1}]')
    assert C.get_categories(str(path), 2)[0].name == "a"
    path.write_text('[{"id": 0, "name": "bb", "isthing": 0}]')
    assert C.get_categories(str(path), 2)[0].name == "bb"
