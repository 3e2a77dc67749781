"""The trace store's one budget: traces and everything derived from them, counted in bytes; evicted
traces really freed; the app's store built with that budget and that size function; uploads bounded."""
import gc
import weakref

import numpy as np
import pytest
from PIL import Image

import detr_viz
from detr_viz.store import TraceStore, UploadStore, trace_bytes, trim_memory
from detr_viz.testing import tiny_model


@pytest.fixture(scope="module")
def model():
    return tiny_model(seed=1)


def photo(i: int) -> Image.Image:
    rng = np.random.default_rng(i)
    return Image.fromarray((rng.random((48, 64, 3)) * 255).astype(np.uint8))


def small_trace(model, i: int):
    return detr_viz.trace(model, photo(i), size=48)


def test_thirty_uploads_stay_within_the_budget_and_evicted_traces_are_freed(model):
    first = small_trace(model, 100)
    one = trace_bytes(first)
    del first
    budget = int(3.5 * one)
    store = TraceStore(budget, trace_bytes, trim=False)
    refs, counted = [], []
    for i in range(30):
        t = small_trace(model, i)
        refs.append(weakref.ref(t))
        store.put(i, t)
        # a page derives a picture from it (not counted by trace.nbytes): the store counts it once told
        t.derived.get_or_compute("test.picture", i, lambda t=t: np.zeros((64, 64, 3), np.uint8))
        store.touch(i)
        del t
        counted.append(store.nbytes)
        assert store.nbytes == sum(trace_bytes(store.items[k]) for k in store.items)   # derived values included
    assert max(counted) <= budget
    assert 2 <= len(store) <= 3 and store.stats().evictions == 30 - len(store)
    gc.collect()
    alive = [i for i, r in enumerate(refs) if r() is not None]
    assert alive == list(store.items)                                   # every evicted trace is gone from memory
    store.clear()
    gc.collect()
    assert all(r() is None for r in refs)


def test_derived_values_count_and_can_push_the_oldest_out(model):
    a, b = small_trace(model, 1), small_trace(model, 2)
    store = TraceStore(trace_bytes(a) + trace_bytes(b) + 1000, trace_bytes, trim=False)
    store.put("a", a)
    store.put("b", b)
    assert list(store.items) == ["a", "b"]
    store.get("a")                                                      # used: now the newest
    b.derived.get_or_compute("big", 0, lambda: np.zeros(100_000, np.uint8))
    store.touch("b")                                  # b was used and grew by 100 kB: now a is the oldest, and goes
    assert list(store.items) == ["b"] and store.nbytes == trace_bytes(b)
    assert trace_bytes(b) >= b.nbytes + 100_000


def test_store_keeps_to_its_count_and_memory_budget():
    store = TraceStore(100, len, max_items=3, trim=False)
    for key, size in [("a", 30), ("b", 30), ("c", 30)]:
        store.put(key, "x" * size)
    assert list(store.items) == ["a", "b", "c"] and store.nbytes == 90
    store.get("a")                                           # used: now the newest
    store.put("d", "x" * 50)                                 # 140 > 100: the oldest ("b", then "c") go
    assert list(store.items) == ["a", "d"] and store.nbytes == 80
    assert store.put("huge", "x" * 500) is False             # over the whole budget: not kept at all
    assert "huge" not in store and store.nbytes <= 100
    counted = TraceStore(10**9, len, max_items=2, trim=False)
    for key in "abc":
        counted.put(key, key)
    assert list(counted.items) == ["b", "c"]
    with pytest.raises(TypeError):
        TraceStore(100, None)


def test_the_apps_trace_store_has_the_env_budget_and_counts_derived_values(monkeypatch, model):
    from ui import traces
    monkeypatch.setenv(traces.MEMORY_ENV, "7")
    traces.trace_store.clear()
    try:
        store = traces.trace_store()
        assert store.max_bytes == 7_000_000
        t = small_trace(model, 3)
        t.derived.get_or_compute("test.picture", 0, lambda: np.zeros(50_000, np.uint8))
        store.put("k", t)
        assert store.nbytes == trace_bytes(t) and store.nbytes > t.nbytes + 50_000
    finally:
        traces.trace_store.clear()
    for bad in ("", "nan", "-5", "1e999", "lots"):
        assert traces.memory_budget({traces.MEMORY_ENV: bad}) == traces.DEFAULT_MEMORY_MB * 1_000_000
    assert traces.memory_budget({traces.MEMORY_ENV: "2500"}) == 2_500_000_000


def test_upload_store_is_bounded_in_number_and_bytes():
    uploads = UploadStore(max_items=3, max_bytes=250)
    for i in range(5):
        uploads.put(f"upload:{i}", f"{i}.png", b"x" * 100)
    assert len(uploads) == 2 and uploads.nbytes == 200                # 3 x 100 > 250: bytes bind first
    assert uploads.get("upload:0") is None and uploads.get("upload:4")[0] == "4.png"
    few = UploadStore(max_items=3, max_bytes=10**6)
    for i in range(5):
        few.put(f"upload:{i}", f"{i}.png", b"x")
    assert len(few) == 3 and few.get("upload:1") is None


def test_malloc_trim_is_available_here():
    assert trim_memory() is True                                        # Linux with glibc (CI and the class server)


def test_make_room_evicts_before_a_value_is_computed():
    store = TraceStore(100, len, trim=False)
    for key in "abc":
        store.put(key, "x" * 30)
    store.make_room(30)                                      # 90 + 30 > 100: the oldest goes first
    assert list(store.items) == ["b", "c"] and store.nbytes == 60
    store.make_room(0)
    assert list(store.items) == ["b", "c"]
    store.make_room(1000)                                    # bigger than the budget: everything goes
    assert len(store) == 0
