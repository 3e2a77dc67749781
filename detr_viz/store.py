"""Server-side stores with one budget each: traces by key within a byte budget, uploads by key.

A `TraceStore` holds traces (or any values) by key and counts each one with its size function,
re-measured when the value is put and whenever a caller says it grew (`touch`, `enforce`): for a
trace that is its tensors plus everything derived from it (`trace_bytes`). When the count is over
the budget the least recently used values go. Whoever uses the store keeps only keys, never the
values, so an evicted trace is really freed; after evictions the C allocator is asked to give the
freed memory back (`trim_memory`), which glibc otherwise keeps in its arenas.

An `UploadStore` keeps recent uploads (name, bytes, credit) by key, bounded in number and bytes,
so that a link naming an upload finds it while it is recent.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from .cache import sizeof

_LIBC = None


def trace_bytes(trace) -> int:
    """Bytes a stored trace holds: its tensors (`trace.nbytes`), the images and network input it
    keeps, its panoptic result, and every value derived from it (`trace.derived.nbytes`)."""
    return (trace.nbytes + trace.derived.nbytes + sizeof(trace.image) + sizeof(trace.pre)
            + sizeof(trace.panoptic))


def trim_memory() -> bool:
    """Ask glibc to return freed memory to the system (`malloc_trim(0)`); False where there is no
    glibc (macOS, Windows, musl). Traces are hundreds of MB of tensors; without this, glibc keeps
    most of a freed trace in its arenas and the process's RSS does not come down."""
    global _LIBC
    if _LIBC is None:
        name = ctypes.util.find_library("c")
        try:
            lib = ctypes.CDLL(name) if name else None
            _LIBC = lib if lib is not None and hasattr(lib, "malloc_trim") else False
        except OSError:
            _LIBC = False
    if not _LIBC:
        return False
    _LIBC.malloc_trim(0)
    return True


class Trimmer:
    """Runs `trim_memory()` in a thread of its own when asked, at most once per `interval` seconds:
    malloc_trim walks every arena (about 1.7 s after freeing three R50 traces on 2 busy cores), so
    it must not run in a session's or a trace worker's thread. Requests made meanwhile coalesce."""

    def __init__(self, interval: float = 5.0):
        self.interval, self.runs, self.seconds = interval, 0, 0.0
        self._wanted = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def request(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="detr-viz-malloc-trim", daemon=True)
                self._thread.start()
        self._wanted.set()

    def _loop(self) -> None:
        while True:
            self._wanted.wait()
            self._wanted.clear()
            t0 = time.perf_counter()
            if not trim_memory():
                return                      # no glibc: nothing to do, ever
            self.runs += 1
            self.seconds += time.perf_counter() - t0
            time.sleep(self.interval)


TRIMMER = Trimmer()


@dataclass(frozen=True)
class StoreStats:
    items: int
    nbytes: int
    max_bytes: int
    evictions: int


class TraceStore:
    """Values by key, least recently used first out, within `max_bytes` as counted by `size_of`.

    `size_of(value)` is called when a value is put and again by `touch(key)` / `enforce()` (a trace
    grows as pages derive pictures from it). The newest value is never evicted by `put` while it
    fits the budget alone; a value bigger than the whole budget is not kept at all (the caller
    still has it for the run at hand). Thread-safe."""

    def __init__(self, max_bytes: int, size_of: Callable[[object], int], max_items: int | None = None,
                 trim: bool = True):
        if size_of is None:
            raise TypeError("a TraceStore needs a size function (e.g. detr_viz.store.trace_bytes)")
        self.max_bytes, self.size_of, self.max_items, self.trim = int(max_bytes), size_of, max_items, trim
        self.items: OrderedDict = OrderedDict()
        self._sizes: dict[Hashable, int] = {}
        self._lock = threading.Lock()
        self.evictions = 0

    def get(self, key):
        """The value, marked as just used; None if it is not (or no longer) here."""
        with self._lock:
            if key not in self.items:
                return None
            self.items.move_to_end(key)
            return self.items[key]

    def __contains__(self, key) -> bool:
        with self._lock:
            return key in self.items

    def __len__(self) -> int:
        with self._lock:
            return len(self.items)

    def put(self, key, value) -> bool:
        """Store `value` as the newest; evict the oldest until the budget holds. False if the value
        alone is over the budget (then it is not kept). Asks for a trim in any case: the value was
        just computed, and the computation's temporaries are freed memory glibc would keep."""
        size = int(self.size_of(value))
        with self._lock:
            self.items.pop(key, None)
            self._sizes.pop(key, None)
            kept = size <= self.max_bytes
            if kept:
                self.items[key], self._sizes[key] = value, size
            evicted = self._evict_locked()
        self._after_evict(max(evicted, 1))     # a new trace: its forward pass has just freed its temporaries
        return kept

    def touch(self, key) -> None:
        """`key`'s value was just used and may have grown: mark it the newest, measure it again, and
        keep to the budget (the oldest go)."""
        with self._lock:
            if key not in self.items:
                return
            self.items.move_to_end(key)
            value = self.items[key]
        size = int(self.size_of(value))
        with self._lock:
            if self.items.get(key) is value:
                self._sizes[key] = size
            evicted = self._evict_locked()
        self._after_evict(evicted)

    def enforce(self) -> None:
        """Measure every value again and keep to the budget."""
        with self._lock:
            snapshot = list(self.items.items())
        sizes = {k: int(self.size_of(v)) for k, v in snapshot}
        with self._lock:
            for k, v in snapshot:
                if self.items.get(k) is v:
                    self._sizes[k] = sizes[k]
            evicted = self._evict_locked()
        self._after_evict(evicted)

    def make_room(self, nbytes: int) -> None:
        """Evict the oldest values until `nbytes` more would fit the budget: called before computing
        a value of about that size, so that the new value and those held never exceed the budget
        together, not even while it is being computed."""
        with self._lock:
            total = sum(self._sizes.values())
            evicted = 0
            while self.items and total + nbytes > self.max_bytes:
                old, _ = self.items.popitem(last=False)
                total -= self._sizes.pop(old, 0)
                evicted += 1
            self.evictions += evicted
        self._after_evict(evicted)

    def pop(self, key):
        with self._lock:
            self._sizes.pop(key, None)
            value = self.items.pop(key, None)
        return value

    def clear(self) -> None:
        with self._lock:
            evicted = len(self.items)
            self.items.clear()
            self._sizes.clear()
        self._after_evict(evicted)

    @property
    def nbytes(self) -> int:
        """The bytes counted now (as last measured)."""
        with self._lock:
            return sum(self._sizes.values())

    def stats(self) -> StoreStats:
        with self._lock:
            return StoreStats(len(self.items), sum(self._sizes.values()), self.max_bytes, self.evictions)

    def _evict_locked(self) -> int:
        evicted = 0
        total = sum(self._sizes.values())
        while self.items and (total > self.max_bytes
                              or (self.max_items is not None and len(self.items) > self.max_items)):
            old, _ = self.items.popitem(last=False)
            total -= self._sizes.pop(old, 0)
            evicted += 1
        self.evictions += evicted
        return evicted

    def _after_evict(self, evicted: int) -> None:
        if evicted and self.trim:
            TRIMMER.request()        # in the background; the evicted values are unreferenced by now


class UploadStore:
    """Recent uploads by key ("upload:<hash>"): (name, bytes, credit), at most `max_items` of them and
    `max_bytes` bytes together (the oldest go first). Thread-safe."""

    def __init__(self, max_items: int, max_bytes: int):
        self.max_items, self.max_bytes = max_items, max_bytes
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def put(self, key: str, name: str, data: bytes, credit: str = "") -> None:
        with self._lock:
            self._items.pop(key, None)
            self._items[key] = (name, data, credit)
            while len(self._items) > 1 and (len(self._items) > self.max_items or self._nbytes() > self.max_bytes):
                self._items.popitem(last=False)

    def get(self, key: str) -> tuple[str, bytes, str] | None:
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key]

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def _nbytes(self) -> int:
        return sum(len(data) for _, data, _ in self._items.values())

    @property
    def nbytes(self) -> int:
        with self._lock:
            return self._nbytes()
