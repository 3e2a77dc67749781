"""Time and peak memory: plain full forward (all 100 queries through the mask head) vs detr_viz.trace.

    python benchmarks/trace_bench.py [--size 800x1066] [--device cpu] [--repeats 2]

R50 panoptic with random weights; a hook on the class head makes exactly 10 queries confident, so
the trace runs the mask head for 10 queries. Both sides produce the panoptic map at the original
image size (preprocess + model + merge), and the maps are compared. Peak memory: each variant
runs once in its own process; peak = the process's peak RSS (GPU: peak allocated) minus its RSS
just before the run. Time: one more process alternates full / trace `--repeats` times and keeps
the best of each (so a busy machine slows both alike). Goal: trace <= 0.35x time, <= 0.5x memory.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KEPT = 10


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _build(device: str):
    import torch

    from detr_viz import create_model
    torch.manual_seed(0)
    model = create_model("detr-r50-panoptic", weights=None, device=device)
    labels = [1, 3, 18, 44, 62, 184, 187, 119, 149, 199]       # 5 things, 5 stuff (COCO ids)

    def confident(module, args, out):                          # (L, B, N, C+1)
        out = out.clone()
        for q, label in enumerate(labels[:KEPT]):
            out[..., q * 7, label] += 30.0
        return out
    model.detr.class_embed.register_forward_hook(confident)
    return model


def _image(size):
    from PIL import Image
    h, w = size
    img = Image.open(REPO / "assets" / "samples" / "nagasaki_boats.jpg").convert("RGB")
    return img.resize((w, h))                                 # shorter side = h -> no further resize


def _run_once(model, image, variant: str):
    import detr_viz
    if variant == "full":
        pre = detr_viz.preprocess(detr_viz.load_image(image))
        out = model(pre.tensor.to(model.detr.query_embed.weight.device))
        return detr_viz.postprocess_panoptic(out, pre.processed_size, pre.original_size, 0.85,
                                             detr_viz.get_categories("coco", 250))
    return detr_viz.trace(model, image, threshold=0.85).panoptic


def run_timing(size, device: str, repeats: int) -> dict:
    import torch

    from detr_viz.device import synchronize
    torch.set_grad_enabled(False)
    model, image = _build(device), _image(size)
    times = {"full": [], "trace": []}
    for _ in range(repeats):
        for variant in ("full", "trace"):
            synchronize(device)
            t0 = time.perf_counter()
            _run_once(model, image, variant)
            synchronize(device)
            times[variant].append(time.perf_counter() - t0)
    return times


def run_variant(variant: str, size, device: str, repeats: int) -> dict:
    import numpy as np
    import torch

    from detr_viz.device import synchronize
    torch.set_grad_enabled(False)
    model = _build(device)
    image = _image(size)
    base = _rss_mb()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        gpu_base = torch.cuda.memory_allocated()
    result = _run_once(model, image, variant)
    synchronize(device)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base
    info = {"variant": variant, "peak_mb": peak,
            "kept": len(result.segments), "id_map_sha": __import__("hashlib").sha1(result.id_map.tobytes()).hexdigest(),
            "segments": [(s["category_id"], s["area"]) for s in result.segments]}
    if device.startswith("cuda"):
        info["gpu_peak_mb"] = (torch.cuda.max_memory_allocated() - gpu_base) / 2**20
    np.save(f"/tmp/trace_bench_{variant}_idmap.npy", result.id_map)
    return info


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="800x1066", help="network input H x W (default 800x1066)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--variant", choices=["full", "trace", "timing"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    size = tuple(int(v) for v in args.size.lower().split("x"))
    if args.variant == "timing":                               # child processes
        print(json.dumps(run_timing(size, args.device, args.repeats)))
        return 0
    if args.variant:
        print(json.dumps(run_variant(args.variant, size, args.device, args.repeats)))
        return 0
    res = {}
    for variant in ("full", "trace", "timing"):
        cmd = [sys.executable, __file__, "--variant", variant, "--size", args.size, "--device", args.device,
               "--repeats", str(args.repeats)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        res[variant] = json.loads(out.stdout.strip().splitlines()[-1])
    f, t = res["full"], res["trace"]
    for v in (f, t):
        v["times_s"] = res["timing"][v["variant"]]
        v["time_s"] = min(v["times_s"])
    import numpy as np
    same = np.array_equal(np.load("/tmp/trace_bench_full_idmap.npy"), np.load("/tmp/trace_bench_trace_idmap.npy"))
    print(f"R50 panoptic, random weights, input {size[0]}x{size[1]}, device {args.device}, "
          f"{os.cpu_count()} CPUs, torch threads {__import__('torch').get_num_threads()}")
    print(f"{'':8}{'time (s)':>10}{'peak mem (MB)':>16}   kept segments")
    for v in (f, t):
        print(f"{v['variant']:8}{v['time_s']:10.2f}{v['peak_mb']:16.0f}   {v['kept']}"
              + (f"   gpu peak {v['gpu_peak_mb']:.0f} MB" if "gpu_peak_mb" in v else ""))
    rt, rm = t["time_s"] / f["time_s"], t["peak_mb"] / f["peak_mb"]
    print(f"ratio   {rt:10.2f}{rm:16.2f}   (goal: time <= 0.35, memory <= 0.50)")
    print(f"same panoptic map: {same and f['segments'] == t['segments']}")
    print("all times (s): full " + ", ".join(f"{x:.2f}" for x in f["times_s"])
          + "; trace " + ", ".join(f"{x:.2f}" for x in t["times_s"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
