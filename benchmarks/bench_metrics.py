"""Time and peak memory of the pixel/image metrics on a realistic-size evaluation.

Default: 100 maps of 256x256 (6.5 M pixels), half with defect masks (random ellipses, some
images with several regions), smooth float32 anomaly maps that are higher inside defects.
Each metric runs once untraced for time, then once under tracemalloc for peak memory
(numpy reports its buffers to tracemalloc).  Usage:

    .venv/bin/python benchmarks/bench_metrics.py [--n 100] [--size 256] [--seed 0] [--out DIR]

With --out, the config and results are written to DIR/bench_metrics.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
import tracemalloc
from pathlib import Path

import cv2
import numpy as np

from anomalyforge.metrics import aupro, auroc, average_precision, f1_max, image_scores_from_maps


def make_data(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Float32 maps (n, size, size) and uint8 {0,255} masks; every second image is good."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, size, size), np.uint8)
    for i in range(0, n, 2):
        for _ in range(rng.integers(1, 4)):
            centre = tuple(int(v) for v in rng.integers(size // 8, size - size // 8, 2))
            axes = tuple(int(v) for v in rng.integers(2, size // 10 + 3, 2))
            cv2.ellipse(masks[i], centre, axes, float(rng.uniform(0, 180)), 0, 360, 255, -1)
    noise = rng.standard_normal((n, size, size)).astype(np.float32)
    maps = np.stack([cv2.GaussianBlur(m, (0, 0), 3) for m in noise])
    maps += 0.5 * cv2.GaussianBlur(masks.transpose(1, 2, 0), (0, 0), 2).transpose(2, 0, 1) / 255
    return maps, masks


def measure(fn, *args, **kwargs) -> tuple[object, float, float]:
    """(result, seconds, peak MiB traced while running it)."""
    t0 = time.perf_counter()
    result = fn(*args, **kwargs)
    seconds = time.perf_counter() - t0
    tracemalloc.start()
    fn(*args, **kwargs)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return result, seconds, peak / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bins", type=int, default=4096, help="bins for the binned-mode rows")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    maps, masks = make_data(args.n, args.size, args.seed)
    labels = masks > 0
    img_labels = labels.reshape(args.n, -1).any(axis=1)
    print(f"{args.n} maps x {args.size}x{args.size} = {maps.size / 1e6:.2f} M pixels, "
          f"{labels.mean():.3%} defect pixels")
    runs = {
        "pixel auroc": (auroc, (maps, labels), {}),
        "pixel average_precision": (average_precision, (maps, labels), {}),
        "pixel f1_max": (f1_max, (maps, labels), {}),
        "aupro@0.3": (aupro, (maps, masks), {}),
        f"pixel auroc bins={args.bins}": (auroc, (maps, labels), {"bins": args.bins}),
        f"aupro@0.3 bins={args.bins}": (aupro, (maps, masks), {"bins": args.bins}),
        "image_scores_from_maps": (image_scores_from_maps, (maps,), {}),
    }
    results = {}
    for name, (fn, a, kw) in runs.items():
        value, seconds, peak = measure(fn, *a, **kw)
        shown = value if np.ndim(value) == 0 or isinstance(value, tuple) else "array"
        if name == "image_scores_from_maps":
            shown = f"image auroc {auroc(value, img_labels):.4f}"
        print(f"{name:28s} {seconds:7.3f} s  peak {peak:7.1f} MiB  -> {shown}")
        results[name] = {"seconds": seconds, "peak_mib": peak, "value": str(shown)}
    max_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"process max RSS {max_rss:.0f} MiB (includes the input data)")
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        record = {"config": vars(args) | {"out": str(args.out)}, "results": results,
                  "max_rss_mib": max_rss}
        (args.out / "bench_metrics.json").write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
