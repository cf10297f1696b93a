"""Does a shorter k-fold refit schedule leave the delivered thresholds and classifier choice unchanged?

On TRAINING data only (the test split is never read): one category's final `cpu` model is trained
once on a generated run (`anomalyforge generate ... --out RUN`), as `pipelines.train.train_delivered`
does; then the k-fold refits (`inspect.kfold.fold_maps`) are made with each of `--fold-steps`
optimiser steps, and for each schedule the script records what the delivered model would get from
them: the pixel threshold (`pipelines.thresholds`, best F1 on the fold maps), the fold maps' own
best F1 and pixel AP, the classifier input `choose` picks (`inspect.classifier_choice`, with its
fold accuracies), and the seconds of the refits. The first schedule is the reference: every other
one's threshold is also scored on the reference's fold maps (F1 there at that threshold, against
the reference's best), which says what the shorter schedule's threshold costs on the maps of the
full schedule.

    .venv/bin/python benchmarks/bench_fold_schedule.py --data ../shared/datasets/mvtec_ad/bottle \\
        --run RUN --fold-steps 1000,500,250 --out fold_schedule_bottle.json
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from anomalyforge import metrics as M
from anomalyforge.atomic import write_text_atomic
from anomalyforge.data import few_shot_split, fit_data, load_dataset
from anomalyforge.inspect.classifier_choice import choose_classifier
from anomalyforge.inspect.classify import DefectClassifier
from anomalyforge.inspect.pairs import GeneratedPairs
from anomalyforge.inspect.profiles import backbone_weights, get_profile
from anomalyforge.inspect.train import good_images, holdout_goods
from anomalyforge.pipelines.thresholds import fit_thresholds, pooled_pixels
from anomalyforge.pipelines.train import score_pool, train_inspection


def f1_at(px: np.ndarray, gt: np.ndarray, t: float) -> float:
    """Pixel F1 when values above `t` are flagged (as a delivered model's threshold is applied)."""
    pred = px > t
    tp = float(np.sum(pred & gt))
    return 2 * tp / max(1.0, float(pred.sum() + gt.sum()))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--run", type=Path, required=True, help="a generated run of the category")
    ap.add_argument("--fold-steps", default="1000,500,250", help="refit schedules; the first is the reference")
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    prof = get_profile(args.profile)
    schedules = [int(s) for s in args.fold_steps.split(",")]
    split = few_shot_split(load_dataset(args.data), progress=False)
    fit = fit_data(split, size=prof.size)
    pairs = GeneratedPairs.from_run(args.run, prof.size, category=split.category, progress=False)
    real = GeneratedPairs.from_fit_data(fit)
    t = time.perf_counter()
    model = train_inspection(fit, pairs, prof, args.seed, progress=False, real=real)
    train_s = time.perf_counter() - t
    train_fit, held = holdout_goods(fit, prof.fusion_holdout, args.seed)
    goods = good_images(held, prof.size, False)
    good_maps = model.localizer.predict(goods)
    rows, ref = [], None
    for steps in schedules:
        p = replace(prof, fold_steps=steps)
        t = time.perf_counter()
        thr, folds = fit_thresholds(fit, train_fit, goods, good_maps, pairs, model.localizer, p, args.seed,
                                    score_pool(p))
        refit_s = time.perf_counter() - t
        if folds is None:
            raise SystemExit(f"{args.data}: no k-fold maps (too few training defects): nothing to compare")
        px, gt = pooled_pixels(folds, good_maps)
        row = {"fold_steps": steps, "pixel_threshold": thr.pixel, "fold_f1": thr.kfold["f1"] if thr.kfold else None,
               "fold_pixel_ap": M.average_precision(px, gt), "refit_s": round(refit_s, 1)}
        if isinstance(model.classifier, DefectClassifier):
            t = time.perf_counter()
            _, choice, _ = choose_classifier(folds, pairs, real, model.classifier, p, args.seed, backbone_weights(p))
            row.update(cls_chosen=choice.chosen, cls_fold_accuracy=choice.record.get("accuracy"),
                       choice_s=round(time.perf_counter() - t, 1))
        if ref is None:
            ref = (px, gt, thr.pixel)
        row["ref_f1_at_threshold"] = f1_at(ref[0], ref[1], thr.pixel)
        rows.append(row)
        print(json.dumps(row), flush=True)
    doc = {"data": str(args.data), "category": split.category, "run": str(args.run), "profile": prof.to_dict(),
           "seed": args.seed, "final_model_train_s": round(train_s, 1), "reference_fold_steps": schedules[0],
           "rows": rows}
    write_text_atomic(args.out, json.dumps(doc, indent=1) + "\n")
    print(f"{'fold steps':>10} {'threshold':>10} {'fold F1':>8} {'fold AP':>8} {'F1 on ref':>9} "
          f"{'cls':>9} {'refit s':>8}")
    for r in rows:
        print(f"{r['fold_steps']:>10} {r['pixel_threshold']:>10.4f} {r['fold_f1']:>8.4f} {r['fold_pixel_ap']:>8.4f} "
              f"{r['ref_f1_at_threshold']:>9.4f} {r.get('cls_chosen', '-'):>9} {r['refit_s']:>8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
