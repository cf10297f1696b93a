"""Local vs Ray backend: one croppaste generation run, and what a Ray task costs.

One process = one run from scratch into a fresh folder (the folder is removed first), so a
whole-process timer gives the end-to-end wall time of each backend, Ray's start-up included:

    .venv/bin/python benchmarks/bench_distributed.py --data ../shared/datasets/mvtec_ad/bottle \
        --types broken_large,contamination --n 1000 --backend local --out /tmp/af_dist/local
    .venv/bin/python benchmarks/bench_distributed.py --data ../shared/datasets/mvtec_ad/bottle \
        --types broken_large,contamination --n 1000 --backend ray --cpus 2 --shards 2 --out /tmp/af_dist/ray

With `--overhead` (ray only) it also times, after the run, on the warm instance: Ray's start-up
(`ray.init`), the round trip of an empty task (sequential, after a warm-up), and the set-up a
shard task repeats before drawing (`synth.run.fit_run` on the fitted run: dataset, split, hashes
of the training files, state). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path


def _noop() -> int:
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--types", default=None, help="comma-separated defect types (default: all)")
    ap.add_argument("--n", type=int, default=1000, help="pairs per defect type")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--backend", choices=("local", "ray"), default="local")
    ap.add_argument("--cpus", type=int, default=2, help="ray: CPUs of the local Ray instance")
    ap.add_argument("--shards", type=int, default=None, help="ray: shard tasks (default: one per CPU)")
    ap.add_argument("--overhead", action="store_true", help="ray: also time start-up, empty tasks, task set-up")
    ap.add_argument("--out", required=True, help="scratch run folder (removed first)")
    args = ap.parse_args()
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    types = args.types.split(",") if args.types else None
    kw = dict(method="croppaste", n=args.n, types=types, seed=0, size=args.size)
    doc: dict = {"backend": args.backend, "n": args.n, "types": types, "size": args.size}
    t0 = time.perf_counter()
    if args.backend == "local":
        from anomalyforge.synth.run import generate_run

        s = generate_run(Path(args.data), out, progress=False, **kw)
    else:
        import ray

        from anomalyforge.pipelines.distributed import generate_on_ray

        t_init = time.perf_counter()
        ray.init(num_cpus=args.cpus, include_dashboard=False, logging_level="WARNING")
        doc["ray_init_s"] = round(time.perf_counter() - t_init, 2)
        s = generate_on_ray(Path(args.data), out, shards=args.shards, progress=False, **kw)
        doc["shards"] = s["shards"]
    doc.update(wall_s=round(time.perf_counter() - t0, 2), pairs=s["new"],
               pairs_per_s=round(s["new"] / (time.perf_counter() - t0), 2))
    if args.backend == "ray" and args.overhead:
        from anomalyforge.synth.run import fit_run

        task = ray.remote(_noop).options(num_cpus=1)
        ray.get([task.remote() for _ in range(2 * args.cpus)])  # warm workers
        k = 50
        t1 = time.perf_counter()
        for _ in range(k):
            ray.get(task.remote())
        doc["empty_task_round_trip_ms"] = round(1000 * (time.perf_counter() - t1) / k, 2)
        t2 = time.perf_counter()
        ray.get([task.remote() for _ in range(k)])
        doc["empty_tasks_batch_ms_per_task"] = round(1000 * (time.perf_counter() - t2) / k, 2)
        t3 = time.perf_counter()
        fit_run(Path(args.data), out, progress=False, **kw)
        doc["shard_setup_s"] = round(time.perf_counter() - t3, 2)
        ray.shutdown()
    print(json.dumps(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
