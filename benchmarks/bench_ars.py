"""Does the Anomaly Region Score separate aligned defect pairs from misaligned ones? (GAA filter)

Trains the ARS discriminator with its default (SimpleNet) settings on a category's good *training*
images, then scores held-out real defect images three ways:
  aligned   - the real defect with its true mask (what a good generator should produce);
  unaltered - the same mask laid over an unaltered good test image (nothing generated in the mask);
  moved     - the real defect with its mask moved elsewhere (defect outside its mask).
Reports AUROC(aligned vs unaltered), AUROC(aligned vs moved), and with --croppaste the mean ARS of
a croppaste run's pairs (generate_run + filter_run, i.e. the real pipeline) next to the three groups.
Target: both AUROCs >= 0.9. Writes JSON (config, figures, timings) beside the outputs.

    .venv/bin/python benchmarks/bench_ars.py --data ../shared/datasets/mvtec_ad/bottle --out /tmp/af_bench_ars
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np


def _moved(mask: np.ndarray) -> np.ndarray:
    out = np.rot90(mask, 2).copy()
    out[mask > 0] = 0
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--category", default=None)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--steps", type=int, default=None, help="override discriminator steps")
    p.add_argument("--croppaste", type=int, default=0,
                   help="also generate and filter this many croppaste pairs per type")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    from sklearn.metrics import roc_auc_score

    from anomalyforge.data import few_shot_split, load_dataset
    from anomalyforge.data.io import read_image, read_mask
    from anomalyforge.quality.ars import ARSConfig, train_or_load

    cfg = ARSConfig() if args.steps is None else ARSConfig(steps=args.steps)
    split = few_shot_split(load_dataset(args.data, category=args.category), progress=False)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    scorer = train_or_load([s.image for s in split.train_good], args.out / "ars", cfg, seed=args.seed)
    t_train = time.perf_counter() - t0
    tests = [s for t in sorted(split.test_defects) for s in split.test_defects[t] if s.mask is not None]
    imgs = [read_image(s.image, cfg.size) for s in tests]
    masks = [read_mask(s.mask, cfg.size) for s in tests]
    keep = [i for i, m in enumerate(masks) if m.any()]
    imgs, masks = [imgs[i] for i in keep], [masks[i] for i in keep]
    goods = [read_image(split.test_good[i % len(split.test_good)].image, cfg.size) for i in range(len(imgs))]
    t1 = time.perf_counter()
    aligned = scorer.score(imgs, masks)
    unaltered = scorer.score(goods, masks)
    moved = scorer.score(imgs, [_moved(m) for m in masks])
    t_score = time.perf_counter() - t1
    ok = np.isfinite(moved)
    res = {"category": split.category, "n_pairs": len(imgs), "train_seconds": round(t_train, 1),
           "score_seconds_per_pair": round(t_score / (3 * len(imgs)), 4),
           "auroc_aligned_vs_unaltered": round(float(roc_auc_score(
               np.r_[np.ones(len(aligned)), np.zeros(len(unaltered))], np.r_[aligned, unaltered])), 4),
           "auroc_aligned_vs_moved": round(float(roc_auc_score(
               np.r_[np.ones(ok.sum()), np.zeros(ok.sum())], np.r_[aligned[ok], moved[ok]])), 4),
           "mean_ars": {"aligned": float(np.mean(aligned)), "unaltered": float(np.mean(unaltered)),
                        "moved": float(np.nanmean(moved))}}
    if args.croppaste:
        from anomalyforge.formats.manifest import read_manifest
        from anomalyforge.quality.filter import filter_run
        from anomalyforge.synth.run import generate_run

        run = args.out / "croppaste_run"
        generate_run(args.data, run, method="croppaste", n=args.croppaste, category=args.category,
                     seed=args.seed, size=cfg.size, progress=False)
        filter_run(run, keep_ratio=0.5, seed=args.seed, config=cfg, progress=False)
        recs = read_manifest(run, include_rejected=True)
        ars = [r["scores"]["ars"] for r in recs if r["scores"].get("ars") is not None]
        res["mean_ars"]["croppaste"] = float(np.mean(ars))
    res["config"] = asdict(cfg)
    (args.out / "bench_ars.json").write_text(json.dumps(res, indent=2))
    print(json.dumps({k: v for k, v in res.items() if k != "config"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
