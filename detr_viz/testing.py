"""Fixtures for tests: the tiny random models of `detr_viz.random_models` (meaningless pictures, fast
forward passes) under the names the tests use. Production code imports `random_models`, not this."""
from __future__ import annotations

from .random_models import AT_HALF, CONFIDENT, NO_OBJECT, TINY, UNSURE, make_confident, tiny_model

__all__ = ["AT_HALF", "CONFIDENT", "NO_OBJECT", "TINY", "UNSURE", "make_confident", "tiny_model"]
