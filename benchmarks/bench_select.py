"""The training-fold selection behind `--profile auto` (and the check of the `cpu` defaults), alone.

Runs `anomalyforge.pipelines.select.select_settings` on one category's few-shot TRAINING split with
the `auto` profile (the `cpu` settings) and prints every candidate's fold scores (score = mean of
pixel AP, AUPRO and image AUROC on each fold's held-out real defects + held-out good training
images) and the choice; the test split is never read. `--set` overrides as on the command line
(e.g. `--set 'extra={"select": {"generators": ["croppaste"], "folds": 3}}'`).

    OMP_NUM_THREADS=1 python benchmarks/bench_select.py --data ../shared/datasets/mvtec_ad/bottle --out sel.json
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from anomalyforge.data import few_shot_split, fit_data, load_dataset
    from anomalyforge.inspect.profiles import get_profile
    from anomalyforge.pipelines.select import select_settings

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="profile override (JSON value)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    over = {}
    for item in args.set:
        k, v = item.split("=", 1)
        try:
            over[k] = json.loads(v)
        except json.JSONDecodeError:
            over[k] = v
    prof = get_profile("auto", **over)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        split = few_shot_split(load_dataset(args.data), progress=False)
    sel = select_settings(fit_data(split, size=prof.size), prof, seed=args.seed, progress=False)
    rec = sel.record
    print(f"{split.category}: {rec['folds']} folds, score = {rec['score']} ({rec['seconds']:.0f} s)")
    print(f"  {'generator':<12}{'w':>5}  {'score':>7}   folds (pixel AP / AUPRO / image AUROC)")
    for c in rec["candidates"]:
        folds = "  ".join(f"{f['pixel_ap']}/{f['aupro']}/{f['image_auroc']}" for f in c["folds"])
        print(f"  {c['generator']:<12}{c['fusion']:>5.2f}  {c['score']:>7.4f}   {folds}")
    for r in rec["classifier"]:
        print(f"  classifier real share {r['cls_real_share']}: accuracy {r['accuracy']} (folds {r['folds']})")
    print(f"choice: {rec['choice']}")
    args.out.write_text(json.dumps({"data": str(args.data), "seed": args.seed, "set": over, "selection": rec},
                                   indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
