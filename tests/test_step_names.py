"""One name per step: the STEPS key names the page file, the explain module and nothing else.

Step k with key `<key>` is drawn by `pages/k_<Key>.py` (ui.page.PAGES[k]) from the module
`detr_viz.explain.stepk_<key>` (and, for a large step, `stepk_<key>_<part>`); the page imports it. No explain module shares a basename
with a module of the model code (`detr_viz/<name>.py`)."""
import importlib
import re
from pathlib import Path

from conftest import REPO

from detr_viz.stages import STEPS
from ui.page import PAGES

EXPLAIN = REPO / "detr_viz" / "explain"


def test_steps_pages_and_explain_modules_share_one_name():
    assert [s.number for s in STEPS] == list(range(1, 8))
    assert sorted(k for k in PAGES if 1 <= k <= 7) == [s.number for s in STEPS]
    for s in STEPS:
        path = PAGES[s.number][0]
        number, name = Path(path).stem.split("_", 1)
        assert path.startswith("pages/") and int(number) == s.number and name.lower() == s.key, (path, s.key)
        assert (REPO / path).is_file(), path
        module = f"step{s.number}_{s.key}"
        importlib.import_module(f"detr_viz.explain.{module}")
        assert re.search(rf"from detr_viz\.explain import {module}\b", (REPO / path).read_text()), \
            f"{path} does not draw from detr_viz.explain.{module}"
    prefixes = [f"step{s.number}_{s.key}" for s in STEPS]
    for module in (p.stem for p in EXPLAIN.glob("step*.py")):   # a step's further modules: step{k}_{key}_<part>
        assert any(module == p or module.startswith(p + "_") for p in prefixes), module


def test_every_page_file_is_in_the_menu():
    assert sorted(str(p.relative_to(REPO)) for p in (REPO / "pages").glob("*.py")) == \
        sorted(path for path, _ in PAGES.values() if path.startswith("pages/"))


def test_no_explain_module_shares_a_basename_with_the_model_code():
    core = {p.stem for p in (REPO / "detr_viz").glob("*.py")} - {"__init__", "__main__"}
    assert not core & {p.stem for p in EXPLAIN.glob("*.py")}
