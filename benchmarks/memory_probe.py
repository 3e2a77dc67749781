"""Where does a trace server's memory go? A short measurement, not a test.

    python benchmarks/memory_probe.py [--images 6] [--keep 3] [--model r50-random]

Traces `--images` distinct 800 x 1066 images, each in a fresh thread (as Streamlit runs every
script run in a new thread), keeping the last `--keep` traces in an LRU (as the app's store does),
with a few derived values per trace (a picture, a merge at another threshold). After each trace it
prints the process RSS (/proc/self/smaps_rollup), the bytes the store counts (trace.nbytes), the
bytes not counted by trace.nbytes (image, network input, panoptic, derived), and the Python-level
allocations tracemalloc sees. At the end: the store cleared + gc (are traces freed? weakrefs), then
glibc malloc_trim(0), RSS after each.
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import threading
import time
import tracemalloc
import weakref
from collections import OrderedDict

import numpy as np
from PIL import Image

import detr_viz
from detr_viz.cache import sizeof
from detr_viz.config import R50_PANOPTIC
from detr_viz.random_models import make_confident, tiny_model


def rss_mb() -> dict:
    out = {}
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if parts[0] in ("Rss:", "Anonymous:"):
                out[parts[0][:-1]] = int(parts[1]) / 1024
    return out


def image(i: int) -> Image.Image:
    rng = np.random.default_rng(i)
    base = np.asarray(Image.open("assets/samples/nagasaki_boats.jpg").convert("RGB").resize((800, 1066)))
    noise = rng.integers(0, 40, base.shape, dtype=np.uint8)
    return Image.fromarray((base // 2 + noise).astype(np.uint8))    # 800 wide x 1066 high, distinct


def uncounted(t) -> int:
    return sizeof(t.image) + sizeof(t.pre) + sizeof(t.panoptic) + t.derived.nbytes


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=6)
    ap.add_argument("--keep", type=int, default=3)
    ap.add_argument("--model", default="r50-random")
    ap.add_argument("--trim", action="store_true", help="malloc_trim(0) after each eviction (as the app's store)")
    args = ap.parse_args()
    torch_threads = 2
    import torch
    torch.set_num_threads(torch_threads)
    cfg = R50_PANOPTIC if args.model == "r50-random" else None
    model = make_confident(tiny_model(cfg, seed=0) if cfg else tiny_model(seed=1))
    libc = ctypes.CDLL("libc.so.6")
    tracemalloc.start()
    print(f"start: {rss_mb()}")
    store: OrderedDict = OrderedDict()
    refs = []
    for i in range(args.images):
        box = {}

        def run(i=i, box=box):
            t = detr_viz.trace(model, image(i))
            t.merge(0.5)                                      # a second merge (masks kept on the trace)
            t.derived.get_or_compute("probe.picture", 0, lambda: t.image.resize((800, 600)))
            box["t"] = t
        t0 = time.perf_counter()
        th = threading.Thread(target=run)
        th.start()
        th.join()
        t = box.pop("t")
        refs.append(weakref.ref(t))
        store[i] = t
        evicted = False
        while len(store) > args.keep:
            store.popitem(last=False)
            evicted = True
        del t
        if evicted and args.trim:
            gc.collect()
            t1 = time.perf_counter()
            libc.malloc_trim(0)
            print(f"  malloc_trim {time.perf_counter() - t1:.2f} s")
        counted = sum(v.nbytes for v in store.values()) / 1e6
        extra = sum(uncounted(v) for v in store.values()) / 1e6
        py = tracemalloc.get_traced_memory()[0] / 1e6
        print(f"trace {i}: {time.perf_counter() - t0:.1f} s; held {len(store)}; counted {counted:.0f} MB; "
              f"not counted {extra:.0f} MB; tracemalloc {py:.0f} MB; rss {rss_mb()}", flush=True)
    snap = tracemalloc.take_snapshot()
    for stat in snap.statistics("filename")[:4]:
        print("  tracemalloc top:", stat)
    store.clear()
    gc.collect()
    alive = sum(r() is not None for r in refs)
    print(f"store cleared + gc: traces alive {alive}; rss {rss_mb()}")
    t0 = time.perf_counter()
    libc.malloc_trim(0)
    print(f"malloc_trim(0) ({(time.perf_counter() - t0) * 1e3:.0f} ms): rss {rss_mb()}")


if __name__ == "__main__":
    main()
