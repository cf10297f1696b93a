"""Decision thresholds from training data only (`pipelines.thresholds`): the image threshold at the
stated false-alarm rate of held-out good images, the pixel one at the best F1 on k-fold held-out
training defects (or the good-pixel fallback)."""

from __future__ import annotations

import numpy as np
import pytest

from anomalyforge.errors import ConfigError
from anomalyforge.inspect.kfold import FoldMaps
from anomalyforge.pipelines.thresholds import choose_thresholds


def _maps(seed: int = 0) -> tuple[np.ndarray, FoldMaps]:
    rng = np.random.default_rng(seed)
    goods = rng.uniform(0.0, 0.6, (10, 16, 16)).astype(np.float32)
    masks = np.zeros((6, 16, 16), bool)
    masks[:, 4:10, 4:10] = True
    maps = np.where(masks, rng.uniform(0.4, 1.0, masks.shape), rng.uniform(0.0, 0.5, masks.shape)).astype(np.float32)
    return goods, FoldMaps(maps, masks, [{"fold": 0, "held_out": 3}, {"fold": 1, "held_out": 3}])


def test_pixel_threshold_is_the_best_f1_on_held_out_defects_and_goods():
    goods, folds = _maps()
    t = choose_thresholds(goods, 4, 0.1, folds)
    assert t.pixel_from == "kfold_f1" and t.kfold is not None and (t.kfold["k"], t.kfold["n_defects"]) == (2, 6)
    px = np.concatenate([folds.maps.ravel(), goods.ravel()])
    gt = np.concatenate([folds.masks.ravel(), np.zeros(goods.size, bool)])

    def f1(thr: float) -> float:
        p = px > thr
        return 2 * np.sum(p & gt) / (np.sum(p) + np.sum(gt))

    assert f1(t.pixel) == pytest.approx(t.kfold["f1"], abs=1e-12)  # the recorded F1 is what `>` gives
    assert all(f1(v) <= t.kfold["f1"] + 1e-12 for v in np.unique(px)[::50])  # and no threshold beats it
    assert t.pixel_fpr == pytest.approx(np.mean(goods > t.pixel))
    assert "best pixel F1" in t.rule and "6 real few-shot training defects" in t.rule


def test_without_defects_both_thresholds_come_from_good_images():
    goods, _ = _maps()
    t = choose_thresholds(goods, 4, 0.1)
    assert t.pixel_from == "good_fpr" and t.kfold is None
    assert np.mean(goods > t.pixel) <= 0.1 and t.image_fpr <= 0.1 and t.n_images == 10
    with pytest.raises(ConfigError, match="--fpr must be in"):
        choose_thresholds(goods, 4, 1.0)
    with pytest.raises(ConfigError, match="held-out good training images"):
        choose_thresholds(goods[:0], 4, 0.1)
