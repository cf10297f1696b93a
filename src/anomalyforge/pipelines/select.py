"""`--profile auto`: per-category choice of generator, fusion weight and classifier real share,
made on TRAINING data only (k-fold over the few-shot training defects).

Protocol. The few-shot training defects of each type are dealt into `folds` folds (every k-th
defect by id); fold k holds out its defects plus a seeded share (`good_holdout`) of the good
training images, disjoint between folds. Everything else of the training split is all that fold
may learn from: each candidate generator is fitted on that fold's training defects only (at most
`canvas_goods` good images as canvases) and makes `n_per_type` pairs per type; the supervised head
is trained for `steps` (a cheaper schedule than the final `steps`) on at most `max_goods` good
images, PatchCore once per fold on the same good images; both maps are standardised on the
fold's own `fusion_holdout` share (as `inspect.train.FusedLocalizer`), so every fusion weight of
the grid is scored from the same two maps (w = 1 is PatchCore alone, w = 0 the head alone).

Score of a candidate (generator, w) on a fold: the mean of pixel AP, AUPRO (FPR <= 0.3) and image
AUROC on the fold's held-out real defects + held-out good images; its score is the mean over
folds. The best (ties: earlier candidate) is chosen. With two or more defect types the classifier's
real share is then chosen for the chosen generator by the mean fold accuracy on the held-out
defects. Settings the user fixed with `--set` (`fusion`, `cls_real_share`) are not chosen.
The test split is never read here (the benchmark reads it once, after this choice).

Budget: (generators x folds) head trainings of `steps` steps, `folds` PatchCore fits and, with
classes, (shares x folds) classifier trainings; the record's `budget` states it.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from anomalyforge.data.fitdata import FitData
from anomalyforge.errors import ConfigError
from anomalyforge.inspect.classify import train_classifier
from anomalyforge.inspect.evaluate import TestSet, localization_metrics
from anomalyforge.inspect.pairs import GeneratedPairs
from anomalyforge.inspect.patchcore import PatchCore
from anomalyforge.inspect.profiles import Profile
from anomalyforge.inspect.train import good_images, holdout_goods, train_supervised
from anomalyforge.metrics import image_scores_from_maps
from anomalyforge.seeds import pair_seed
from anomalyforge.synth.base import get_generator
from anomalyforge.synth.mf_base import ModelFreeGenerator
from anomalyforge.synth.mixture import Mixture, member_of, members

AUTO = "auto"  # the method label that stands for the chosen generator
SCORE = "mean of pixel AP, AUPRO (FPR <= 0.3) and image AUROC, over the folds"


@dataclass(frozen=True)
class SelectionConfig:
    """The candidate grid and the per-fold budget (override with ``--set extra='{"select": {...}}'``)."""

    generators: tuple[str, ...] = ("croppaste", "logical", "nsa", "perlin", "cutpaste", "mixture")
    fusion: tuple[float, ...] = (0.0, 0.3, 0.6, 0.8, 1.0)
    cls_real_share: tuple[float, ...] = (0.5, 0.75, 1.0)
    folds: int = 3
    n_per_type: int = 100  # pairs per type and fold (at most the profile's n_per_type)
    steps: int = 300  # head steps per fold
    cls_steps: int = 100  # classifier steps per fold
    good_holdout: float = 0.1  # share of good training images scoring each fold
    max_goods: int = 100  # good images a fold's head and PatchCore learn from
    canvas_goods: int = 40  # good images a fold's generators paint on

    @classmethod
    def from_profile(cls, prof: Profile) -> SelectionConfig:
        raw = dict(prof.extra.get("select") or {})
        names = {f.name for f in dataclasses.fields(cls)}
        bad = sorted(set(raw) - names)
        if bad:
            raise ConfigError(f"selection has no setting(s) {', '.join(bad)}; known: {', '.join(sorted(names))}")
        vals: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
        cfg = dataclasses.replace(cls(), **vals)
        if cfg.folds < 2:
            raise ConfigError(f"selection needs at least 2 folds, got {cfg.folds}")
        if not cfg.generators or not cfg.fusion or any(not 0 <= w <= 1 for w in cfg.fusion):
            raise ConfigError("selection needs generators and fusion weights in [0, 1]")
        for g in cfg.generators:
            get_generator(g)
        return cfg


@dataclass
class Selection:
    """The choice and its record (results.json `selection`)."""

    generator: str
    fusion: float
    cls_real_share: float
    per_method: dict[str, float]  # best fusion weight of each candidate generator
    record: dict[str, Any]

    def fusion_for(self, method: str) -> float:
        """The fusion weight a benchmarked method trains with (its own best, else the chosen one)."""
        return self.per_method.get(method, self.fusion)

    def generator_for(self, method: str) -> str:
        return self.generator if method == AUTO else method

    def profile_for(self, prof: Profile, method: str) -> Profile:
        """The profile a method's model is trained with: the chosen weights unless fixed by `--set`."""
        fixed = set(prof.extra.get("fixed") or [])
        changes: dict[str, Any] = {}
        if "fusion" not in fixed:
            changes["fusion"] = float(self.fusion_for(self.generator_for(method)))
        if "cls_real_share" not in fixed:
            changes["cls_real_share"] = float(self.cls_real_share)
        return dataclasses.replace(prof, **changes)

    @classmethod
    def from_record(cls, record: dict) -> Selection:
        """Rebuild the choice from a saved record (a resumed benchmark does not select again)."""
        c = record["choice"]
        return cls(str(c["generator"]), float(c["fusion"]), float(c["cls_real_share"]),
                   {k: float(v) for k, v in record.get("per_method", {}).items()}, record)


def is_candidate(method: str) -> bool:
    """Whether a method is cheap enough to be fitted per fold (model-free or a model-free mixture)."""
    cls = get_generator(method)
    if issubclass(cls, Mixture):
        return all(is_candidate(m) for m in members(cls.Config().methods))
    return issubclass(cls, ModelFreeGenerator)


def _folds(fit: FitData, cfg: SelectionConfig, seed: int) -> list[tuple[FitData, list[tuple[Any, str]], list[Any]]]:
    """(fold training view, held-out defects (sample, type), held-out goods) per fold."""
    n = len(fit.good)
    m = max(1, int(round(n * cfg.good_holdout)))
    if n < cfg.folds * m + 2:
        raise ConfigError(f"{fit.category}: {n} good training images are too few for {cfg.folds} folds")
    order = np.random.default_rng([seed, 18]).permutation(n)
    out = []
    for k in range(cfg.folds):
        held_goods = set(order[k * m:(k + 1) * m].tolist())
        keep = {t: [s for i, s in enumerate(v) if i % cfg.folds != k] for t, v in fit.defects.items()}
        keep = {t: v for t, v in keep.items() if v}
        held = [(s, t) for t, v in sorted(fit.defects.items()) for i, s in enumerate(v) if i % cfg.folds == k]
        rest = [s for i, s in enumerate(fit.good) if i not in held_goods]
        rest = [rest[i] for i in sorted(np.random.default_rng([seed, 18, k]).permutation(len(rest))[:cfg.max_goods])]
        fold = dataclasses.replace(fit, defects=keep, good=rest)
        out.append((fold, held, [fit.good[i] for i in sorted(held_goods)]))
    return out


def _pairs(method: str, fold: FitData, cfg: SelectionConfig, n: int, seed: int, k: int,
           cache: dict[str, dict[str, list]]) -> GeneratedPairs:
    """`n` pairs per type from the fold's training defects (a mixture reuses its members' pairs)."""
    cls = get_generator(method)
    types = fold.defect_types
    seeds = {t: [pair_seed(seed * 1000 + k, t, i) for i in range(n)] for t in types}
    if issubclass(cls, Mixture) and all(m in cache for m in members(cls.Config().methods)):
        names = members(cls.Config().methods)
        by_type = {t: [cache[names[member_of(s, len(names))]][t][i] for i, s in enumerate(seeds[t])] for t in types}
    else:
        gen = cls(cls.make_config())
        canvas = dataclasses.replace(fold, good=fold.good[:cfg.canvas_goods])
        with tempfile.TemporaryDirectory() as state:
            gen.fit(canvas, Path(state))
            by_type = {t: gen.generate(t, seeds[t]) for t in types}
    cache[method] = by_type
    items = [(p, t) for t in types for p in by_type[t]]
    return GeneratedPairs(np.stack([p.image for p, _ in items]), np.stack([p.mask for p, _ in items]),
                          [t for _, t in items], fold.category)


def _stats(maps: np.ndarray) -> tuple[float, float]:
    m = maps.astype(np.float64)
    return float(m.mean()), float(max(m.std(), 1e-6))


def _score(val: TestSet, z_sup: np.ndarray, z_pc: np.ndarray, w: float, pool: int | None
           ) -> dict[str, float | None]:
    s = (1.0 - w) * z_sup + w * z_pc
    maps = (0.5 + 0.5 * s / (1.0 + np.abs(s))).astype(np.float32)
    loc = localization_metrics(val, maps, image_scores_from_maps(maps, pool), progress=False)
    parts = {"pixel_ap": loc["pixel"]["ap"], "aupro": loc["pixel"]["aupro"], "image_auroc": loc["image"]["auroc"]}
    vals = [v for v in parts.values() if v is not None]
    return {**{k: None if v is None else round(float(v), 4) for k, v in parts.items()},
            "score": round(float(np.mean(vals)), 4) if vals else 0.0}


def select_settings(fit: FitData, prof: Profile, seed: int = 0, methods: list[str] | None = None,
                    progress: bool = False) -> Selection:
    """Choose generator, fusion weight and classifier real share on training folds (see module doc).

    `methods`: the synthetic methods a benchmark will train; model-free ones join the candidates so
    each gets its own fusion weight."""
    t0 = time.perf_counter()
    cfg = SelectionConfig.from_profile(prof)
    fixed = set(prof.extra.get("fixed") or [])
    gens = list(dict.fromkeys([*cfg.generators, *(m for m in methods or [] if m != AUTO and is_candidate(m))]))
    gens.sort(key=lambda g: issubclass(get_generator(g), Mixture))  # members first: mixtures reuse their pairs
    weights = [float(prof.fusion)] if "fusion" in fixed else sorted(set(float(w) for w in cfg.fusion))
    n = min(cfg.n_per_type, prof.n_per_type)
    fold_prof = dataclasses.replace(prof, fusion=0.0, steps=cfg.steps, epochs=0)
    scores: dict[tuple[str, float], list[dict]] = {(g, w): [] for g in gens for w in weights}
    folds = _folds(fit, cfg, seed)
    fold_pairs: list[dict[str, GeneratedPairs]] = []
    fold_info = []
    for k, (fold, held, held_goods) in enumerate(folds):
        rest, ref = holdout_goods(fold, prof.fusion_holdout, seed)
        val = TestSet(images=np.stack([fit.image(s) for s, _ in held] + [fit.image(s) for s in held_goods]),
                      masks=np.stack([(fit.mask(s) > 0).astype(np.uint8) for s, _ in held]
                                     + [np.zeros((fit.size, fit.size), np.uint8)] * len(held_goods)),
                      labels=np.array([1] * len(held) + [0] * len(held_goods), np.int64),
                      types=np.array([t for _, t in held] + ["good"] * len(held_goods)),
                      paths=np.array([str(s.image) for s, _ in held] + [str(s.image) for s in held_goods]))
        ref_imgs = good_images(ref, prof.size, False)
        z_pc: np.ndarray = np.zeros(val.masks.shape, np.float32)
        if any(w > 0 for w in weights):
            pc = PatchCore(prof.pc_levels, prof.pc_coreset, prof.pc_projection, prof.pc_sigma, seed, prof.device,
                           max_bank=prof.pc_max_bank, candidates=prof.pc_candidates)
            pc.fit(good_images(rest, prof.size, False), False)
            mu, sd = _stats(pc.predict(ref_imgs))
            z_pc = (pc.predict(val.images) - mu) / sd
        cache: dict[str, dict[str, list]] = {}
        made: dict[str, GeneratedPairs] = {}
        for g in gens:
            pairs = _pairs(g, fold, cfg, n, seed, k, cache)
            made[g] = pairs
            if any(w < 1 for w in weights):
                sup = train_supervised(rest, pairs, fold_prof, seed, progress=False)
                mu, sd = _stats(sup.logits(ref_imgs))
                z_sup = (sup.logits(val.images) - mu) / sd
            else:
                z_sup = np.zeros_like(z_pc)
            for w in weights:
                scores[(g, w)].append(_score(val, z_sup, z_pc, w, prof.score_pool))
        fold_pairs.append(made)
        fold_info.append({"held_defects": {t: sum(1 for _, x in held if x == t) for t in sorted(fit.defects)},
                          "held_goods": len(held_goods), "train_goods": len(rest.good)})
    cands: list[dict[str, Any]] = [{"generator": g, "fusion": w, "folds": scores[(g, w)],
              "score": round(float(np.mean([f["score"] for f in scores[(g, w)]])), 4)} for g in gens for w in weights]
    best = max(cands, key=lambda c: c["score"])  # max keeps the first of equal scores
    per_method = {g: max((c for c in cands if c["generator"] == g), key=lambda c: c["score"])["fusion"] for g in gens}
    share, cls_rows = float(prof.cls_real_share), cast(list[dict[str, Any]], [])
    if len(fit.defects) > 1 and "cls_real_share" not in fixed and len(cfg.cls_real_share) > 1:
        cls_prof = dataclasses.replace(prof, cls_steps=cfg.cls_steps)
        for s in cfg.cls_real_share:
            accs = []
            for (fold, held, _), made in zip(folds, fold_pairs, strict=True):
                pairs = made[best["generator"]]
                if len(pairs.defect_types) < 2:
                    continue
                clf = train_classifier(pairs, cls_prof, seed=seed, progress=False,
                                       real=GeneratedPairs.from_fit_data(fold), real_share=float(s))
                ev = [(x, t) for x, t in held if t in clf.labels]
                pred = clf.predict(np.stack([fit.image(x) for x, _ in ev])) if ev else []
                accs.append(round(float(np.mean([p == t for p, (_, t) in zip(pred, ev, strict=True)])), 4)
                            if ev else None)
            got = [a for a in accs if a is not None]
            cls_rows.append({"cls_real_share": float(s), "folds": accs,
                             "accuracy": round(float(np.mean(got)), 4) if got else None})
        scored = [r for r in cls_rows if r["accuracy"] is not None]
        if scored:
            share = float(max(scored, key=lambda r: r["accuracy"])["cls_real_share"])
    record: dict[str, Any] = {
        "score": SCORE, "folds": cfg.folds, "fold_data": fold_info,
        "fixed": sorted(fixed & {"fusion", "cls_real_share"}),
        "budget": {"head_trainings": len(gens) * cfg.folds, "head_steps": cfg.steps, "patchcore_fits": cfg.folds,
                   "classifier_trainings": len(cls_rows) * cfg.folds, "classifier_steps": cfg.cls_steps,
                   "pairs_per_type": n},
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()},
        "candidates": cands, "classifier": cls_rows, "per_method": per_method,
        "choice": {"generator": best["generator"], "fusion": best["fusion"], "cls_real_share": share,
                   "score": best["score"]},
        "seconds": round(time.perf_counter() - t0, 1),
    }
    return Selection(str(best["generator"]), float(best["fusion"]), share, per_method, record)
