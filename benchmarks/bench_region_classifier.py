"""Defect-type accuracy of a region classifier (issue 18, item 3): chosen on training folds, scored once.

The experiment behind `cls_input` (the `map region / real` arm is what the product now builds:
`inspect.region_classify`, chosen by `inspect.classifier_choice`); kept to compare the other arms.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_region_classifier.py \
        --data ../shared/datasets/mvtec_ad/bottle --run BENCH/runs/croppaste \
        [--maps BENCH/methods/croppaste/maps.npz] [--model BENCH/models/croppaste] [--out FILE.json]

The idea tried: instead of fine-tuning a CNN on whole images, describe a defect by the frozen
EfficientNet-Lite0 features (stride 16 and 32) averaged *inside its region*, plus the whole-image
average, and classify that descriptor with a logistic regression (scikit-learn). Arms:

* `whole / real`:          whole-image descriptor, real few-shot defects only;
* `region / real`:         region descriptor, real few-shot defects only;
* `region / gen+real`:     region descriptor, generated pairs (`--run`) + real few-shot defects;
* `map region / real`:     (with `--model` and `--maps`) the region a MAP marks, at training time
                           too: each real few-shot defect's map by the k-fold model of the
                           delivered model that never saw it (`inspect.kfold.fold_maps`, the maps
                           its pixel threshold is chosen on), at test time the benchmark's map; so
                           the classifier learns from regions as the localiser draws them, not as
                           an annotator does. Folds and test score it with map regions only.

Choice on training data only: 3 folds over the real few-shot defects (`inspect.kfold.assign_folds`);
each fold trains on the other folds' real defects and on the generated pairs not pasted from a
held-out defect, and is scored on the held-out real defects with their own masks; with `--model`
also as deployed, each held-out defect described by the region its fold map marks, and the arm
is then chosen by that deployed fold score (`--fold-maps` caches the maps). Then, once, on
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
from anomalyforge.inspect.kfold import assign_folds, donor_key, fold_maps, n_folds
from anomalyforge.inspect.pairs import GeneratedPairs
from anomalyforge.inspect.train import good_images, holdout_goods
from anomalyforge.pipelines.train import load_model, profile_of

SIZE = 256
ARMS = ("whole / real", "region / real", "region / gen+real")
MAP_ARM = "map region / real"


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
            wt = torch.from_numpy(small)[:, None]
            total = wt.sum((2, 3), keepdim=True)
            wt = torch.where(total > 0, wt / total.clamp_min(1e-12), torch.full_like(wt, 1.0 / (h * w)))
            parts_r.append((f * wt).sum((2, 3)))
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


def real_fold_maps(model: Path, fit, gen: GeneratedPairs, real_keys: list[str], seed: int,
                   cache: Path | None) -> np.ndarray:
    """(N, S, S) map of each real few-shot defect (in `real_keys` order) by the k-fold model of the
    delivered `model` that never saw it; read from / written to `cache` (npz) when given."""
    if cache is not None and cache.is_file():
        z = np.load(cache)
        if list(z["keys"]) != real_keys:
            raise SystemExit(f"{cache}: fold maps of other defects")
        return z["maps"]
    tm = load_model(model)
    prof = profile_of(tm.info)
    if prof.size != SIZE:
        raise SystemExit(f"{model}: a {prof.size} px model; this experiment runs at {SIZE}")
    k = n_folds(fit)
    train_fit, held_fit = holdout_goods(fit, prof.fusion_holdout, seed)
    fm = fold_maps(fit, train_fit, good_images(held_fit, SIZE, False), gen, tm.model.localizer, prof, seed, k)
    if fm is None:
        raise SystemExit("no k-fold maps: some fold would keep no generated pair")
    order = [donor_key(s.image) for f in range(k) for _, s, g in assign_folds(fit, k) if g == f]
    by_key = dict(zip(order, fm.maps, strict=True))
    maps = np.stack([by_key[key] for key in real_keys])
    if cache is not None:
        np.savez_compressed(cache, maps=maps, keys=np.array(real_keys))
    return maps


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
    p.add_argument("--model", type=Path, default=None,
                   help="the benchmark's saved model of that run (--save-models): adds the map-region arm")
    p.add_argument("--seed", type=int, default=0, help="the benchmark's seed (its good-image hold-out)")
    p.add_argument("--fold-maps", type=Path, default=None, help="npz cache of the k-fold maps (made once)")
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
    arms = list(ARMS)
    rm = None
    if a.model is not None:  # each real few-shot defect's map by the fold model that never saw it
        real_maps = real_fold_maps(a.model, fit, gen, real_keys, a.seed, a.fold_maps)
        _, rm = descriptors(real.images, map_weights(real_maps))
        arms.append(MAP_ARM)
    gen_keys = [donor_key(d) if d else "" for d in (gen.donors or [""] * len(gen))]
    dealt = {donor_key(s.image): f for _, s, f in assign_folds(fit, a.folds)}

    def train_set(arm: str, keep_real: np.ndarray, keep_gen: np.ndarray) -> tuple[np.ndarray, list[str]]:
        if arm == "whole / real":
            return rw[keep_real], [real.types[i] for i in keep_real]
        if arm == "region / real":
            return rr[keep_real], [real.types[i] for i in keep_real]
        if arm == MAP_ARM:
            assert rm is not None
            return rm[keep_real], [real.types[i] for i in keep_real]
        return (np.concatenate([rr[keep_real], gr[keep_gen]]),
                [real.types[i] for i in keep_real] + [gen.types[i] for i in keep_gen])

    folds: dict[str, list[float]] = {arm: [] for arm in arms}
    deployed: dict[str, list[float]] = {arm: [] for arm in arms}  # held-out defects described by fold maps
    for f in range(a.folds):
        held = np.array([i for i, k in enumerate(real_keys) if dealt[k] == f])
        keep_real = np.array([i for i, k in enumerate(real_keys) if dealt[k] != f])
        held_keys = {real_keys[i] for i in held}
        keep_gen = np.array([i for i, k in enumerate(gen_keys) if k not in held_keys])
        if len(held) == 0 or len(set(real.types[i] for i in keep_real)) < 2:
            continue
        for arm in arms:
            x, y = train_set(arm, keep_real, keep_gen)
            truth = np.array([real.types[i] for i in held])
            if arm != MAP_ARM:  # scored on the held-out defects' true regions
                pred = fit_predict(x, y, rw[held] if arm == "whole / real" else rr[held])
                folds[arm].append(float(np.mean(pred == truth)))
            if rm is not None:  # as deployed: the held-out defect's region is the one its map marks
                pred = fit_predict(x, y, rw[held] if arm == "whole / real" else rm[held])
                deployed[arm].append(float(np.mean(pred == truth)))
    doc: dict = {"category": ds.category, "run": str(a.run), "n_real": len(real), "n_generated": len(gen),
                 "folds": {arm: {"mean": float(np.mean(v)) if v else None, "per_fold": v} for arm, v in folds.items()}}
    if rm is not None:  # choose as the classifier will be used: on regions drawn by a map
        doc["folds_deployed"] = {arm: {"mean": float(np.mean(v)) if v else None, "per_fold": v}
                                 for arm, v in deployed.items()}
    score = doc.get("folds_deployed", doc["folds"])
    chosen = max(arms, key=lambda arm: (score[arm]["mean"] or -1))
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
        for arm in arms:
            if arm == MAP_ARM and name == "true masks":
                continue  # it learns map regions: scored on map regions only
            x, y = train_set(arm, all_real, all_gen)
            pred = fit_predict(x, y, tw if arm == "whole / real" else tr)
            doc["test"][name][arm] = float(np.mean(pred == t_types))
    if a.out is not None:
        write_json_atomic(a.out, doc)
    print(f"{ds.category}: {len(real)} real few-shot defects, {len(gen)} generated pairs, {int(d.sum())} test defects")
    print("| arm | training folds, true masks | training folds, fold maps | test, true masks | test, benchmark's map |")
    print("|---|---|---|---|---|")
    for arm in arms:
        mean = doc["folds"][arm]["mean"]
        cells = [f"{100 * mean:.1f}" if mean is not None else "-"]
        dep = doc.get("folds_deployed", {}).get(arm, {}).get("mean")
        cells.append(f"{100 * dep:.1f}" if dep is not None else "-")
        cells += [f"{100 * doc['test'][n][arm]:.1f}" if arm in doc["test"].get(n, {}) else "-"
                  for n in ("true masks", "benchmark's map")]
        print(f"| {arm}{' (chosen)' if arm == chosen else ''} | " + " | ".join(cells) + " |")
    if "benchmark_classifier_accuracy" in doc:
        print(f"benchmark's classifier on the same test defects: {100 * doc['benchmark_classifier_accuracy']:.1f}")
    print(json.dumps(doc["folds"]), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
