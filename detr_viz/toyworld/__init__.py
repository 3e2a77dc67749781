"""The toy world: synthetic panoptic scenes and the small DETR trained on them.

`generate_scene(seed, size)` draws one scene (image, id map, COCO-panoptic-style segments);
`toyworld_categories()` is its category table (4 shapes = things, 4 backgrounds = stuff);
`TOYWORLD_CONFIG` (in `config`) is the shipped model's architecture and merge threshold.
Training lives in `train` (the loop), `data`, `matcher`, `criterion`, `evaluate` and `release`,
imported on demand (the matcher needs scipy).
"""
from .categories import toyworld_categories
from .config import TOYWORLD_CONFIG
from .scenes import (
    DEFAULT_SIZE,
    TEST_SEED0,
    VAL_SEED0,
    Scene,
    SceneSpec,
    generate_scene,
    sample_scenes,
    test_scenes,
    validation_scenes,
)

__all__ = ["DEFAULT_SIZE", "TEST_SEED0", "TOYWORLD_CONFIG", "VAL_SEED0", "Scene", "SceneSpec", "generate_scene",
           "sample_scenes", "test_scenes", "validation_scenes", "toyworld_categories"]
