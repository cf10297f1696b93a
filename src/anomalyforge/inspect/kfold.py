"""Maps of the real few-shot TRAINING defects by models that never saw them (k-fold), for the pixel
threshold of a delivered model (`pipelines.thresholds`): no test image is read.

The training defects are dealt into k folds, per type in file order (round-robin, so every fold
holds some of each type that has k or more). For each fold the supervised localiser is refit on
the generated pairs NOT pasted from that fold's defects (a pair names its donor defect in the
manifest, `GeneratedPairs.donors`; pairs that name none are kept) and the same good training images
as the final model, with the profile's schedule (`fold_steps` optimiser steps when set); what is
reused, not refit: the frozen backbone's features (computed once for all folds), PatchCore's bank
and its standardisation (good images only, no defect reaches them) and the classifier (not needed
for a map). A fused fold model is standardised on the same held-out good images as the final
model, so its maps are on the final model's scale. Each held-out defect is mapped once, by the
model of its fold.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from anomalyforge.data.fitdata import FitData
from anomalyforge.data.types import Sample
from anomalyforge.errors import ConfigError
from anomalyforge.inspect.pairs import GeneratedPairs
from anomalyforge.inspect.profiles import Profile
from anomalyforge.inspect.train import (
    FusedLocalizer,
    Localizer,
    MapPredictor,
    _stats,
    cache_features,
    train_supervised,
)

MAX_FOLDS = 3
MIN_DEFECTS = 4  # fewer few-shot training defects in all: no k-fold (thresholds fall back on goods)


def donor_key(path: str | Path) -> str:
    """A defect image's identity for matching a pair's donor: its last three path parts (the
    dataset's type folder and file name), so a run made with another working folder still matches."""
    return "/".join(Path(str(path)).parts[-3:])


def assign_folds(fit: FitData, k: int) -> list[tuple[str, Sample, int]]:
    """(type, sample, fold) of every few-shot training defect: per type in file order, dealt
    round-robin, each type starting where the previous one stopped (folds of even size)."""
    out, nxt = [], 0
    for t in fit.defect_types:
        for s in fit.defects[t]:
            out.append((t, s, nxt % k))
            nxt += 1
    return out


def n_folds(fit: FitData) -> int:
    """k for `fit`: min(MAX_FOLDS, number of defects); 0 with fewer than MIN_DEFECTS defects."""
    n = sum(len(v) for v in fit.defects.values())
    return 0 if n < MIN_DEFECTS else min(MAX_FOLDS, n)


@dataclass
class FoldMaps:
    """Maps (N, S, S) float32 of the held-out training defects, their masks (N, S, S) bool, and
    per fold how many defects were held out and how many generated pairs were dropped / kept;
    per defect its image (N, S, S, 3) uint8, type, donor key and fold (in the same order)."""

    maps: np.ndarray
    masks: np.ndarray
    folds: list[dict] = field(default_factory=list)
    pairs_without_donor: int = 0
    images: np.ndarray | None = None
    types: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    fold_of: list[int] = field(default_factory=list)


def fold_maps(fit: FitData, train_fit: FitData, held_goods: np.ndarray, pairs: GeneratedPairs,
              localizer: MapPredictor, prof: Profile, seed: int, k: int,
              progress: bool = False) -> FoldMaps | None:
    """Maps of every few-shot defect of `fit` by a fold model that saw neither it nor a pair pasted
    from it (see the module doc). `train_fit`: the good images the final model trained on;
    `held_goods` (N, S, S, 3): the held-out good images a fused model standardises on; `localizer`:
    the final model (its PatchCore part and extractor are reused). None (before any training) when
    some fold would keep no generated pair to train on."""
    if k < 2:
        raise ConfigError(f"k-fold needs at least 2 folds, got {k}")
    fused = isinstance(localizer, FusedLocalizer)
    sup_final = localizer.supervised if isinstance(localizer, FusedLocalizer) else localizer
    assert isinstance(sup_final, Localizer)
    sup_prof = dataclasses.replace(prof, fusion=0.0, steps=prof.fold_steps or prof.steps)
    cache = sup_final.features  # the final model's training features: the same images, the same frozen backbone
    if cache is None or not cache.made_from(train_fit, pairs):
        cache = cache_features(sup_final.model, train_fit, pairs, prof.size, progress)
    donors = pairs.donors or [""] * len(pairs)
    keys = [donor_key(d) if d else "" for d in donors]
    dealt = assign_folds(fit, k)
    for f in range(k):
        held = {donor_key(s.image) for _, s, g in dealt if g == f}
        if all(key in held for key in keys):
            return None
    maps, masks, folds, images_all = [], [], [], []
    for f in tqdm(range(k), desc="k-fold thresholds", disable=not progress, leave=False):
        out = [s for _, s, g in dealt if g == f]
        if not out:
            continue
        held = {donor_key(s.image) for s in out}
        keep = np.array([i for i, key in enumerate(keys) if key not in held], np.int64)
        sub = pairs.subset(keep)
        feats = cache.select(None, keep) if cache is not None else None
        sup = train_supervised(train_fit, sub, sup_prof, seed, False, features=feats)
        if fused:
            assert isinstance(localizer, FusedLocalizer)
            model: MapPredictor = FusedLocalizer(sup, localizer.patchcore, localizer.weight,
                                                 _stats(sup.logits(held_goods)), localizer.pc_stats)
        else:
            model = sup
        images = np.stack([fit.image(s) for s in out])
        images_all.append(images)
        maps.append(model.predict(images))
        masks.append(np.stack([fit.mask(s) > 0 for s in out]))
        folds.append({"fold": f, "held_out": len(out), "pairs_dropped": int(len(pairs) - len(keep)),
                      "pairs_trained": int(len(keep))})
    order = [(t, s, g) for f in range(k) for t, s, g in dealt if g == f]
    return FoldMaps(np.concatenate(maps), np.concatenate(masks), folds, sum(1 for key in keys if not key),
                    np.concatenate(images_all), [t for t, _, _ in order], [donor_key(s.image) for _, s, _ in order],
                    [g for _, _, g in order])


__all__ = ["MAX_FOLDS", "MIN_DEFECTS", "FoldMaps", "assign_folds", "donor_key", "fold_maps", "n_folds"]
