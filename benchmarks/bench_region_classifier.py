"""Defect-type accuracy of a region classifier (issue 18, item 3): chosen on training folds, scored once.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_region_classifier.py \
        --data ../shared/datasets/mvtec_ad/bottle --run BENCH/runs/croppaste \
        [--maps BENCH/methods/croppaste/maps.npz] [--out FILE.json]

The idea tried: instead of fine-tuning a CNN on whole images, describe a defect by the frozen
EfficientNet-Lite0 features (stride 16 and 32) averaged *inside its region*, plus the whole-image
average, and classify that descriptor with a logistic regression (scikit-learn). Arms:

* `whole / real`:          whole-image descriptor, real few-shot defects only;
* `region / real`:         region descriptor, real few-shot defects only;
* `region / gen+real`:     region descriptor, generated pairs (`--run`) + real few-shot defects.

Choice on training data only: 3 folds over the real few-shot defects (`inspect.kfold.assign_folds`);
each fold trains on the other folds' real defects and on the generated pairs not pasted from a
held-out defect, and is scored on the held-out real defects with their own masks. Then, once, on
the test split: every arm trained on all training data and scored (a) with the true masks (the
ceiling: a perfect localiser) and (b) with the region the benchmark's own map marks (`--maps`:
the `maps.npz` of a `benchmark` of that run; pixels above the map's 90th percentile, weighted by
how far above) — the deployable figure, to set against the benchmark's classifier in the same file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from anomalyforge.atomic import write_json_atomic
from anomalyforge.data import few_shot_split, fit_data, load_dataset
from anomalyforge.features.backbone import BackboneSpec, frozen_extractor, to_tensor
from anomalyforge.inspect.evaluate import TestSet
from anomalyforge.inspect.kfold import assign_folds, donor_key
from anomalyforge.inspect.pairs import GeneratedPairs

SIZE = 256
ARMS = ("whole / real", "region / real", "region / gen+real")


@torch.no_grad()
def descriptors(images: np.ndarray, weights: np.ndarray, batch: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """(whole, region) descriptors of (N, S, S, 3) images; `weights` (N, S, S) >= 0 mark the region."""
    fx = frozen_extractor(BackboneSpec(levels=(3, 4)))
    whole, region = [], []
    for i in range(0, len(images), batch):
        feats = fx(to_tensor(images[i:i + batch]))
        w_img = weights[i:i + batch].astype(np.float32)
        parts_w, parts_r = [], []
        for f in feats:
            h, w = f.shape[-2:]
            small = np.stack([cv2.resize(m, (w, h), interpolation=cv2.INTER_AREA) for m in w_img])
            small = torch.from_numpy(small)[:, None]
            total = small.sum((2, 3), keepdim=True)
            small = torch.where(total > 0, small / total.clamp_min(1e-12), torch.full_like(small, 1.0 / (h * w)))
            parts_r.append((f * small).sum((2, 3)))
            parts_w.append(f.mean((2, 3)))
        whole.append(torch.nn.functional.normalize(torch.cat(parts_w, 1), dim=1).numpy())
        r = torch.cat([torch.nn.functional.normalize(torch.cat(parts_r, 1), dim=1),
                       torch.nn.functional.normalize(torch.cat(parts_w, 1), dim=1)], 1)
        region.append(r.numpy())
    return np.concatenate(whole), np.concatenate(region)


def map_weights(maps: np.ndarray, q: float = 90.0) -> np.ndarray:
    """Region weights from defect maps: how far each pixel lies above its map's q-th percentile."""
    m = maps.astype(np.float32)
    thr = np.percentile(m.reshape(len(m), -1), q, axis=1)[:, None, None]
    return np.clip(m - thr, 0, None)


def classifier() -> object:
    return make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=3000, class_weight="balanced"))


def fit_predict(x_train: np.ndarray, y_train: list[str], x_test: np.ndarray) -> np.ndarray:
    clf = classifier()
    clf.fit(x_train, y_train)  # type: ignore[attr-defined]
    return np.asarray(clf.predict(x_test))  # type: ignore[attr-defined]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--run", type=Path, required=True, help="a generated run of this category (its pairs)")
    p.add_argument("--maps", type=Path, default=None, help="maps.npz of a benchmark of that run")
    p.add_argument("--folds", type=int, default=3)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    ds = load_dataset(a.data)
    split = few_shot_split(ds, progress=False)
    split.check_disjoint()
    fit = fit_data(split, size=SIZE)
    real = GeneratedPairs.from_fit_data(fit)
    gen = GeneratedPairs.from_run(a.run, SIZE, progress=False)
    rw, rr = descriptors(real.images, real.masks > 0)
    gw, gr = descriptors(gen.images, gen.masks > 0)
    real_keys = [donor_key(d) for d in (real.donors or [])]
    gen_keys = [donor_key(d) if d else "" for d in (gen.donors or [""] * len(gen))]
    dealt = {donor_key(s.image): f for _, s, f in assign_folds(fit, a.folds)}

    def train_set(arm: str, keep_real: np.ndarray, keep_gen: np.ndarray) -> tuple[np.ndarray, list[str]]:
        if arm == "whole / real":
            return rw[keep_real], [real.types[i] for i in keep_real]
        if arm == "region / real":
            return rr[keep_real], [real.types[i] for i in keep_real]
        return (np.concatenate([rr[keep_real], gr[keep_gen]]),
                [real.types[i] for i in keep_real] + [gen.types[i] for i in keep_gen])

    folds: dict[str, list[float]] = {arm: [] for arm in ARMS}
    for f in range(a.folds):
        held = np.array([i for i, k in enumerate(real_keys) if dealt[k] == f])
        keep_real = np.array([i for i, k in enumerate(real_keys) if dealt[k] != f])
        held_keys = {real_keys[i] for i in held}
        keep_gen = np.array([i for i, k in enumerate(gen_keys) if k not in held_keys])
        if len(held) == 0 or len(set(real.types[i] for i in keep_real)) < 2:
            continue
        for arm in ARMS:
            x, y = train_set(arm, keep_real, keep_gen)
            xt = rw[held] if arm == "whole / real" else rr[held]
            pred = fit_predict(x, y, xt)
            folds[arm].append(float(np.mean(pred == np.array([real.types[i] for i in held]))))
    doc: dict = {"category": ds.category, "run": str(a.run), "n_real": len(real), "n_generated": len(gen),
                 "folds": {arm: {"mean": float(np.mean(v)) if v else None, "per_fold": v} for arm, v in folds.items()}}
    chosen = max(ARMS, key=lambda arm: (doc["folds"][arm]["mean"] or -1))
    doc["chosen_on_training_folds"] = chosen

    test = TestSet.load(split, SIZE, progress=False)  # read once, after the choice
    d = test.labels == 1
    t_types = test.types[d]
    all_real, all_gen = np.arange(len(real)), np.arange(len(gen))
    doc["test"] = {}
    weights = {"true masks": test.masks[d] > 0}
    if a.maps is not None:
        z = np.load(a.maps)
        if list(z["paths"]) != list(test.paths):
            raise SystemExit(f"{a.maps}: its test images are not this split's, in this order")
        weights["benchmark's map"] = map_weights(z["maps"][d])
        if "cls_pred" in z.files and len(z["cls_pred"]):
            doc["benchmark_classifier_accuracy"] = float(np.mean(z["cls_pred"] == z["cls_true"]))
    for name, w in weights.items():
        tw, tr = descriptors(test.images[d], w)
        doc["test"][name] = {}
        for arm in ARMS:
            x, y = train_set(arm, all_real, all_gen)
            pred = fit_predict(x, y, tw if arm == "whole / real" else tr)
            doc["test"][name][arm] = float(np.mean(pred == t_types))
    if a.out is not None:
        write_json_atomic(a.out, doc)
    print(f"{ds.category}: {len(real)} real few-shot defects, {len(gen)} generated pairs, {int(d.sum())} test defects")
    print("| arm | training folds (mean) | test, true masks | test, benchmark's map |")
    print("|---|---|---|---|")
    for arm in ARMS:
        fm = doc["folds"][arm]["mean"]
        cells = [f"{100 * fm:.1f}" if fm is not None else "-"]
        cells += [f"{100 * doc['test'][n][arm]:.1f}" if n in doc["test"] else "-"
                  for n in ("true masks", "benchmark's map")]
        print(f"| {arm}{' (chosen)' if arm == chosen else ''} | " + " | ".join(cells) + " |")
    if "benchmark_classifier_accuracy" in doc:
        print(f"benchmark's classifier on the same test defects: {100 * doc['benchmark_classifier_accuracy']:.1f}")
    print(json.dumps(doc["folds"]), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
