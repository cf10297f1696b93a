"""Cost of `cls_input=choose`'s whole-image arm: its k fold retrainings, reusing the final
classifier's cached trunk features (`--reuse`, what `inspect.classifier_choice` does) or computing
them again per fold (`--no-reuse`). Time the two whole processes against each other:

    farm-bench -n 3 --timeout 1800 -- .venv/bin/python benchmarks/bench_classifier_choice.py \
        --data ../shared/datasets/mvtec_ad/bottle --run RUN --n-per-type 100 --reuse \
      --vs ".venv/bin/python benchmarks/bench_classifier_choice.py --data ... --run RUN --n-per-type 100 --no-reuse"

Both first train the final classifier once (as `train` does), then the k fold retrainings; only
training data is read. It prints the fold accuracy, which must not depend on the flag.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from anomalyforge.data import few_shot_split, fit_data, load_dataset
from anomalyforge.inspect.classify import train_classifier
from anomalyforge.inspect.kfold import assign_folds, donor_key, n_folds
from anomalyforge.inspect.pairs import GeneratedPairs
from anomalyforge.inspect.profiles import get_profile


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--run", type=Path, required=True, help="a generated run of this category")
    p.add_argument("--n-per-type", type=int, default=100, help="pairs per type taken from the run")
    p.add_argument("--reuse", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--profile", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    prof = get_profile(a.profile)
    split = few_shot_split(load_dataset(a.data), progress=False)
    fit = fit_data(split, size=prof.size)
    pairs = GeneratedPairs.from_run(a.run, prof.size, progress=False)
    keep = [i for t in pairs.defect_types for i in [j for j, x in enumerate(pairs.types) if x == t][:a.n_per_type]]
    pairs = pairs.subset(keep)
    real = GeneratedPairs.from_fit_data(fit)
    t0 = time.perf_counter()
    final = train_classifier(pairs, prof, seed=0, progress=False, real=real, real_share=prof.cls_real_share)
    t1 = time.perf_counter()
    k = n_folds(fit)
    dealt = assign_folds(fit, k)
    gen_keys = [donor_key(d) if d else "" for d in (pairs.donors or [""] * len(pairs))]
    real_keys = [donor_key(d) for d in (real.donors or [])]
    hits = []
    for f in range(k):
        held = [(t, s) for t, s, g in dealt if g == f]
        out = {donor_key(s.image) for _, s in held}
        kg = [i for i, x in enumerate(gen_keys) if x not in out]
        kr = [i for i, x in enumerate(real_keys) if x not in out]
        rows = kg + [len(pairs) + i for i in kr]
        trunk = final.trunk[rows] if a.reuse and final.trunk is not None else None
        clf = train_classifier(pairs.subset(kg), prof, seed=0, progress=False, real=real.subset(kr),
                               real_share=prof.cls_real_share, trunk=trunk)
        pred = clf.predict(np.stack([fit.image(s) for _, s in held]))
        hits += [p_ == t for p_, (t, _) in zip(pred, held, strict=True)]
    t2 = time.perf_counter()
    print(f"{fit.category}: {len(pairs)} pairs + {len(real)} real, k={k}, reuse={a.reuse}: final {t1 - t0:.1f} s, "
          f"{k} fold retrainings {t2 - t1:.1f} s, fold accuracy {100 * np.mean(hits):.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
