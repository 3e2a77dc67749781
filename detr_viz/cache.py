"""Declared caches of values derived from a trace: bounded, thread-safe, and counted in bytes.

Every picture, table or recomputed tensor a page draws from a trace is a pure function of the
trace and a few small arguments (a query, a layer, a threshold). Such functions are declared
cached once, where they are defined:

    @cached(keep=8)
    def query_picture(trace, q: int, width: int) -> Image.Image: ...

The value is kept in the trace's own `DerivedCache` (`trace.derived`), keyed by the function and
its arguments; each function keeps at most `keep` values (least recently used goes first), so
clicking through queries or thresholds does not pile up pictures. The cache belongs to the trace:
when a trace store evicts the trace, everything derived from it goes with it, and its bytes
(`DerivedCache.nbytes`) count against the same budget as the trace's tensors.
"""
from __future__ import annotations

import dataclasses
import functools
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable

import numpy as np
import torch
from PIL import Image

DEFAULT_KEEP = 16        # values kept per cached function and trace (LRU)


def sizeof(value, _seen: set | None = None) -> int:
    """Bytes held by `value`: tensors, arrays, PIL images, bytes, and containers/dataclasses of them.

    Objects are counted once even when reached twice (a view shares its base's storage only if it is
    the same object; views of one tensor are rare in derived values and counted in full)."""
    seen = set() if _seen is None else _seen
    if id(value) in seen:
        return 0
    seen.add(id(value))
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if isinstance(value, Image.Image):
        return value.width * value.height * len(value.getbands())
    if isinstance(value, (bytes, bytearray, str)):
        return len(value)
    if isinstance(value, dict):
        return sys.getsizeof(value) + sum(sizeof(k, seen) + sizeof(v, seen) for k, v in value.items())
    if isinstance(value, (list, tuple, set, frozenset)):
        return sys.getsizeof(value) + sum(sizeof(v, seen) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return sys.getsizeof(value) + sum(sizeof(getattr(value, f.name), seen) for f in dataclasses.fields(value))
    nbytes = getattr(value, "nbytes", None)               # e.g. a Trace, or anything that says its size
    if isinstance(nbytes, int):
        return nbytes
    return sys.getsizeof(value)


class DerivedCache:
    """Values derived from one trace, grouped by the function that made them (an LRU of `keep`
    values per group). Thread-safe: Streamlit runs sessions in threads. A value is computed outside
    the lock; two sessions asking for the same missing value may both compute it, and the first one
    stored wins (both get equal values: the functions are pure)."""

    def __init__(self):
        self._groups: dict[str, OrderedDict] = {}
        self._sizes: dict[tuple, int] = {}
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get_or_compute(self, group: str, key: Hashable, fn: Callable[[], object], keep: int = DEFAULT_KEEP):
        with self._lock:
            store = self._groups.setdefault(group, OrderedDict())
            if key in store:
                store.move_to_end(key)
                self.hits += 1
                return store[key]
            self.misses += 1
        value = fn()
        size = sizeof(value)
        with self._lock:
            store = self._groups.setdefault(group, OrderedDict())
            if key in store:                                   # another thread stored it meanwhile
                store.move_to_end(key)
                return store[key]
            store[key] = value
            self._sizes[(group, key)] = size
            while len(store) > keep:
                old, _ = store.popitem(last=False)
                self._sizes.pop((group, old), None)
        return value

    @property
    def nbytes(self) -> int:
        with self._lock:
            return sum(self._sizes.values())

    def __len__(self) -> int:
        with self._lock:
            return sum(len(g) for g in self._groups.values())

    def clear(self) -> None:
        with self._lock:
            self._groups.clear()
            self._sizes.clear()


def _freeze(value) -> Hashable:
    """A hashable key for an argument: lists and dicts become tuples, floats are rounded so that a
    slider's 0.7000000001 and 0.7 share a value."""
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, (set, frozenset)):
        return tuple(sorted(_freeze(v) for v in value))
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, np.generic):
        return value.item()
    hash(value)                                                # fail loudly on an unhashable argument
    return value


def cached(fn: Callable | None = None, *, keep: int = DEFAULT_KEEP):
    """Declare `fn(trace, *args, **kwargs)` cached in `trace.derived`, keyed by its arguments.

    Usable bare (`@cached`) or with a bound (`@cached(keep=4)`). The arguments after the trace
    must be hashable (lists, sets, dicts and floats are normalised). `fn.uncached` is the plain
    function."""
    def wrap(f: Callable) -> Callable:
        group = f"{f.__module__}.{f.__qualname__}"

        @functools.wraps(f)
        def wrapper(trace, *args, **kwargs):
            key = (_freeze(args), _freeze(kwargs))
            return trace.derived.get_or_compute(group, key, lambda: f(trace, *args, **kwargs), keep)
        wrapper.uncached = f
        wrapper.cache_group = group
        return wrapper
    return wrap(fn) if fn is not None else wrap
