"""Downstream benchmark: train inspection models on generated pairs, test on real defects.

    .venv/bin/python benchmarks/bench_downstream.py --data ../shared/datasets/mvtec_ad/bottle \
        --methods croppaste,patchcore --profile cpu --out /tmp/bench_bottle [--threads 1]

Calls `anomalyforge.pipelines.benchmark.run_benchmark` and prints the results table with each
method's wall time and the process's peak memory. Targets (cpu profile, MVTec AD bottle):
each method <= 20 min end to end and <= 4 GB; best synthetic method pixel AP >= 0.965 and above
PatchCore (~0.78). `--threads` limits torch's threads in this process only (on a shared,
oversubscribed machine one thread is often faster than two).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from anomalyforge.pipelines.benchmark import format_results_table, run_benchmark


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--category", default=None)
    p.add_argument("--format", dest="data_format", default=None)
    p.add_argument("--methods", default="croppaste,patchcore")
    p.add_argument("--profile", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n", type=int, default=None)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--threads", type=int, default=None, help="torch threads for this process")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    res = run_benchmark(args.data, args.out, [m for m in args.methods.split(",") if m],
                        category=args.category, profile=args.profile, seed=args.seed, n=args.n,
                        data_format=args.data_format, progress=not args.no_progress)
    print(format_results_table(res))
    for m, e in res["methods"].items():
        t = e["timings"]
        print(f"{m}: generate {t['generate_s']:.0f}s train {t['train_s']:.0f}s eval {t['eval_s']:.0f}s "
              f"total {t['total_s']:.0f}s; peak RSS so far {e['peak_rss_mb']:.0f} MB; pairs {e['n_pairs']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
