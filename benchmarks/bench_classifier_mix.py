"""Which data should the defect-type classifier learn from? Validated on TRAINING data only.

The few-shot training defects of each type are split into 3 folds (every 3rd defect by id); per
fold the held-out third is the validation set, and the rest is all a generator and a classifier
may see: `croppaste` pairs are generated from it (n per type), and the profile's classifier is
trained on (a) the real defects alone, (b) the generated pairs alone (the papers' protocol),
(c) generated + real with the real ones drawn at their natural share, (d) generated + real with
half of every class-balanced draw taken from the real ones (`real_share` 0.5). The test split is
never read. Accuracy is pooled over the folds' held-out defects.

    .venv/bin/python benchmarks/bench_classifier_mix.py --data ../shared/datasets/mvtec_ad/bottle --out mix_bottle.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ARMS = ("real", "generated", "generated+real (natural share)", "generated+real (share 0.5)")


def main(argv: list[str] | None = None) -> int:
    from anomalyforge.data import few_shot_split, fit_data, load_dataset
    from anomalyforge.data.fitdata import FitData
    from anomalyforge.inspect.classify import train_classifier
    from anomalyforge.inspect.pairs import GeneratedPairs
    from anomalyforge.inspect.profiles import get_profile
    from anomalyforge.synth.base import get_generator

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--n", type=int, default=300, help="croppaste pairs per type and fold")
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                    help="croppaste parameter (e.g. mask_variation=true)")
    ap.add_argument("--arms", default=",".join(ARMS), help="comma list of the arms to train")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    params = dict(p.split("=", 1) for p in args.param)
    prof = get_profile("cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        split = few_shot_split(load_dataset(args.data), progress=False)
    fit = fit_data(split, size=prof.size)
    hits = {a: [] for a in arms}
    for k in range(args.folds):
        t0 = time.time()
        keep = {t: [s for i, s in enumerate(v) if i % args.folds != k] for t, v in fit.defects.items()}
        held = [(s, t) for t, v in fit.defects.items() for i, s in enumerate(v) if i % args.folds == k]
        sub = FitData(category=fit.category, size=fit.size, defects=keep, good=fit.good,
                      mask_threshold=fit.mask_threshold)
        cls = get_generator("croppaste")
        gen = cls(cls.make_config(params))
        with tempfile.TemporaryDirectory() as state:
            gen.fit(sub, Path(state))
        imgs, masks, types = [], [], []
        for t in sub.defect_types:
            seeds = [int(s) for s in np.random.SeedSequence([args.seed, k, len(t)]).generate_state(args.n)]
            for p in gen.generate(t, seeds):
                imgs.append(p.image), masks.append(p.mask), types.append(t)
        generated = GeneratedPairs(np.stack(imgs), np.stack(masks), types, fit.category)
        real = GeneratedPairs.from_fit_data(sub)
        x = np.stack([fit.image(s) for s, _ in held])
        y = [t for _, t in held]
        runs = {"real": (real, None, 0.0), "generated": (generated, None, 0.0),
                "generated+real (natural share)": (generated + real, None, 0.0),
                "generated+real (share 0.5)": (generated, real, 0.5)}
        for arm in arms:
            pairs, extra, share = runs[arm]
            clf = train_classifier(pairs, prof, seed=args.seed, progress=False, real=extra, real_share=share)
            hits[arm] += [int(p == t) for p, t in zip(clf.predict(x), y, strict=False)]
        print(f"fold {k}: {len(held)} held-out defects, " + ", ".join(
            f"{a} {100 * np.mean(hits[a][-len(held):]):.1f}" for a in arms)
              + f" ({time.time() - t0:.0f} s)", flush=True)
    rows = {a: {"correct": int(sum(h)), "n": len(h), "accuracy": round(100 * float(np.mean(h)), 1)}
            for a, h in hits.items()}
    print(f"\n{fit.category}: validation accuracy over {len(hits[arms[0]])} held-out few-shot defects")
    for a, r in rows.items():
        print(f"  {a:<32} {r['accuracy']:5.1f}  ({r['correct']}/{r['n']})")
    args.out.write_text(json.dumps({"data": str(args.data), "n": args.n, "folds": args.folds, "seed": args.seed,
                                    "croppaste": params,
                                    "profile": prof.name, "arms": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
