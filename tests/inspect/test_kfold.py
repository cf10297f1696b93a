"""k-fold maps of the real few-shot training defects (`inspect.kfold`): every defect is mapped once,
by a refit that trained on no pair pasted from it, on real bottle at smoke scale."""

from __future__ import annotations

import dataclasses

import numpy as np

from anomalyforge.inspect import kfold
from anomalyforge.inspect.pairs import GeneratedPairs
from anomalyforge.inspect.profiles import get_profile
from anomalyforge.inspect.train import train_supervised

PROF = get_profile("smoke", quality=False)


def test_folds_deal_each_type_round_robin(bottle_fit64):
    dealt = kfold.assign_folds(bottle_fit64, 3)
    assert len(dealt) == sum(len(v) for v in bottle_fit64.defects.values()) == 22
    sizes = [sum(1 for _, _, f in dealt if f == k) for k in range(3)]
    assert sorted(sizes) == [7, 7, 8]
    for t in bottle_fit64.defect_types:  # every fold holds some of every type (7 or 8 each)
        assert {f for tt, _, f in dealt if tt == t} == {0, 1, 2}
    assert kfold.n_folds(bottle_fit64) == 3
    few = dataclasses.replace(bottle_fit64, defects={t: v[:1] for t, v in bottle_fit64.defects.items()})
    assert kfold.n_folds(few) == 0  # 3 defects < MIN_DEFECTS: thresholds fall back on good images


def test_a_fold_never_trains_on_pairs_of_its_held_out_defects(bottle_fit64, monkeypatch):
    # the real defects themselves as pairs: each pair's donor is the defect, so a fold must drop
    # exactly its held-out defects' pairs
    pairs = GeneratedPairs.from_fit_data(bottle_fit64)
    pairs = pairs + pairs  # two pairs per donor
    assert pairs.donors is not None and len(pairs.donors) == 44
    final = train_supervised(bottle_fit64, pairs, PROF, seed=0, progress=False)
    trained_on: list[set[str]] = []

    def spy(fit, sub, prof, seed, progress, features=None):
        trained_on.append({kfold.donor_key(d) for d in sub.donors})
        assert features is not None and len(features.pairs[0]) == len(sub)  # the cache is sliced, not recomputed
        return train_supervised(fit, sub, prof, seed, progress, features=features)

    monkeypatch.setattr(kfold, "train_supervised", spy)
    goods = np.stack([bottle_fit64.image(s) for s in bottle_fit64.good[:3]])
    out = kfold.fold_maps(bottle_fit64, bottle_fit64, goods, pairs, final, PROF, 0, 3)
    assert out is not None
    dealt = kfold.assign_folds(bottle_fit64, 3)
    for f, seen in enumerate(trained_on):
        held = {kfold.donor_key(s.image) for _, s, g in dealt if g == f}
        assert not seen & held and seen | held == {kfold.donor_key(d) for d in pairs.donors}
    assert [d["pairs_dropped"] for d in out.folds] == [2 * d["held_out"] for d in out.folds]
    assert out.maps.shape == out.masks.shape == (22, 64, 64) and out.masks.dtype == bool
    assert out.masks.reshape(22, -1).any(1).all() and out.pairs_without_donor == 0
    assert np.isfinite(out.maps).all() and ((out.maps >= 0) & (out.maps <= 1)).all()
    # per defect, in map order: its image, type, donor key and the fold whose model mapped it
    by_key = {kfold.donor_key(s.image): (t, s, g) for t, s, g in dealt}
    assert out.images is not None and out.images.shape == (22, 64, 64, 3) and sorted(out.keys) == sorted(by_key)
    for i, key in enumerate(out.keys):
        t, s, g = by_key[key]
        assert (out.types[i], out.fold_of[i]) == (t, g)
        assert np.array_equal(out.images[i], bottle_fit64.image(s))
        assert np.array_equal(out.masks[i], bottle_fit64.mask(s) > 0)
    assert out.fold_of == sorted(out.fold_of)
    # pairs all pasted from one fold's defects: that fold could train on nothing -> no k-fold at all
    one = pairs.subset([i for i, d in enumerate(pairs.donors) if kfold.donor_key(d) in
                        {kfold.donor_key(s.image) for _, s, g in dealt if g == 0}])
    trained_on.clear()
    assert kfold.fold_maps(bottle_fit64, bottle_fit64, goods, one, final, PROF, 0, 3) is None and not trained_on


def test_the_refits_reuse_the_final_models_features_to_the_same_maps(bottle_fit64, monkeypatch):
    """The final model keeps the backbone features it trained on; the k-fold refits slice those
    (no second backbone pass over the pairs) and map the defects exactly as with features
    computed afresh. Features of other images or pairs are never taken for them."""
    from anomalyforge.inspect import train as train_mod

    pairs = GeneratedPairs.from_fit_data(bottle_fit64)
    final = train_supervised(bottle_fit64, pairs, PROF, seed=0, progress=False)
    assert final.features is not None and final.features.made_from(bottle_fit64, pairs)
    assert not final.features.made_from(bottle_fit64, pairs.subset(list(range(len(pairs) - 1))))
    fewer = dataclasses.replace(bottle_fit64, good=bottle_fit64.good[1:])
    assert not final.features.made_from(fewer, pairs)
    goods = np.stack([bottle_fit64.image(s) for s in bottle_fit64.good[:3]])
    passes: list[int] = []
    real = train_mod._cache_features

    def count(model, images, *a, **k):
        passes.append(len(images))
        return real(model, images, *a, **k)

    monkeypatch.setattr(train_mod, "_cache_features", count)
    reused = kfold.fold_maps(bottle_fit64, bottle_fit64, goods, pairs, final, PROF, 0, 3)
    assert passes == []  # nothing recomputed
    final.drop_features()
    fresh = kfold.fold_maps(bottle_fit64, bottle_fit64, goods, pairs, final, PROF, 0, 3)
    assert passes == [len(bottle_fit64.good), len(pairs)]  # without them: one pass over goods and pairs
    assert reused is not None and fresh is not None
    assert np.array_equal(reused.maps, fresh.maps) and reused.folds == fresh.folds


def test_the_refits_train_for_fold_steps_when_set_else_for_steps(bottle_fit64, monkeypatch):
    pairs = GeneratedPairs.from_fit_data(bottle_fit64)
    final = train_supervised(bottle_fit64, pairs, PROF, seed=0, progress=False)
    goods = np.stack([bottle_fit64.image(s) for s in bottle_fit64.good[:2]])
    schedules: list[tuple[int, float]] = []

    def spy(fit, sub, prof, seed, progress, features=None):
        schedules.append((prof.steps, prof.fusion))
        return train_supervised(fit, sub, prof, seed, progress, features=features)

    monkeypatch.setattr(kfold, "train_supervised", spy)
    kfold.fold_maps(bottle_fit64, bottle_fit64, goods, pairs, final, dataclasses.replace(PROF, fold_steps=2), 0, 3)
    assert schedules == [(2, 0.0)] * 3
    schedules.clear()
    kfold.fold_maps(bottle_fit64, bottle_fit64, goods, pairs, final, PROF, 0, 3)  # fold_steps 0: the profile's steps
    assert schedules == [(PROF.steps, 0.0)] * 3 and PROF.steps != 2
