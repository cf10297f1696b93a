"""Training speed of the `cpu` profile's two trained models on a real generated run.

One process loads the kept pairs of a synthesis run folder (`anomalyforge generate ... --out RUN`),
then trains, as the benchmark does, the defect-type classifier (`inspect.classify.train_classifier`:
frozen-trunk features computed once, then `cls_steps` fine-tuning steps) and / or the localiser
(`inspect.train.train_supervised` on those pairs alone: features cached, then `steps` head steps),
and prints the in-process seconds of each. Compare two source trees from outside, paired, e.g.
(OLD: a checkout of the commit before a change):

    farm-bench -n 3 --timeout 900 --vs 'env PYTHONPATH=OLD/src .venv/bin/python \\
        benchmarks/bench_train_speed.py RUN --part classifier' -- \\
        .venv/bin/python benchmarks/bench_train_speed.py RUN --part classifier
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import torch

from anomalyforge.data.fitdata import FitData
from anomalyforge.inspect.classify import train_classifier
from anomalyforge.inspect.pairs import GeneratedPairs
from anomalyforge.inspect.profiles import get_profile
from anomalyforge.inspect.train import train_supervised


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="a synthesis run folder")
    ap.add_argument("--part", choices=("classifier", "localizer", "both"), default="both")
    ap.add_argument("--steps", type=int, default=None, help="override the profile's steps of the part(s) timed")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    prof = get_profile("cpu")
    if args.steps is not None:
        prof = replace(prof, steps=args.steps, cls_steps=args.steps)
    t = time.perf_counter()
    pairs = GeneratedPairs.from_run(args.run, prof.size, progress=False)
    print(f"load {len(pairs)} pairs: {time.perf_counter() - t:.1f} s")
    if args.part in ("classifier", "both"):
        t = time.perf_counter()
        train_classifier(pairs, prof, seed=args.seed, progress=False)
        print(f"classifier ({prof.cls_steps} steps, features included): {time.perf_counter() - t:.1f} s")
    if args.part in ("localizer", "both"):
        fit = FitData(category=pairs.category or "", size=prof.size, good=[], defects={})
        t = time.perf_counter()
        train_supervised(fit, pairs, replace(prof, fusion=0.0), seed=args.seed, progress=False)
        print(f"localiser ({prof.steps} steps, features included): {time.perf_counter() - t:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
