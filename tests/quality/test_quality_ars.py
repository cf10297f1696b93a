"""ARS must rank well-aligned real defects above masks over unaltered or elsewhere-damaged pixels."""

from __future__ import annotations

import numpy as np
import pytest
from qualitydata import SMALL_ARS, shifted

from anomalyforge.errors import ConfigError, DataError
from anomalyforge.quality.ars import ARSScorer, fingerprint, train_or_load, training_subset


def test_aligned_defects_score_above_unaltered_pixels_and_moved_masks(ars_scorer, bottle_pairs):
    real, good = bottle_pairs
    imgs, masks = [i for i, _ in real], [m for _, m in real]
    s_real = ars_scorer.score(imgs, masks)
    s_good = ars_scorer.score(good, masks)  # the same masks laid over unaltered good images
    s_moved = ars_scorer.score(imgs, [shifted(m) for m in masks])  # defect present, mask elsewhere
    assert np.isfinite(s_real).all() and np.isfinite(s_good).all()
    assert (s_real > s_good).mean() >= 0.8, (s_real, s_good)
    assert (s_real > s_moved).mean() >= 0.8, (s_real, s_moved)
    assert np.median(s_real) > max(np.median(s_good), np.median(s_moved)), (s_real, s_good, s_moved)


def test_anomaly_map_shape_and_empty_mask(ars_scorer, bottle_pairs):
    real, _ = bottle_pairs
    img, mask = real[0]
    maps = ars_scorer.anomaly_maps([img], (100, 80))
    assert maps.shape == (1, 100, 80) and maps.dtype == np.float32
    s = ars_scorer.score([img, img], [mask, np.zeros_like(mask)])
    assert np.isfinite(s[0]) and np.isnan(s[1])
    with pytest.raises(ConfigError, match="differ in size"):
        ars_scorer.score([img], [mask[:100]])


def test_saved_state_reloads_identically_and_cache_is_reused(ars_cache, ars_scorer, bottle_split, bottle_pairs):
    img, mask = bottle_pairs[0][0]
    again = ARSScorer.load(ars_cache)
    assert np.allclose(again.score([img], [mask]), ars_scorer.score([img], [mask]))
    paths = [s.image for s in bottle_split.train_good]
    before = (ars_cache / "state.pt").stat().st_mtime_ns
    train_or_load(paths, ars_cache, SMALL_ARS, seed=0, progress=False)  # same fingerprint: no retraining
    assert (ars_cache / "state.pt").stat().st_mtime_ns == before
    subset = training_subset(paths, 12)
    assert fingerprint(subset, SMALL_ARS, 0) != fingerprint(subset, SMALL_ARS, 1)


def test_missing_state_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="ARS state not found"):
        ARSScorer.load(tmp_path)
    with pytest.raises(ConfigError, match="at least one good"):
        ARSScorer(SMALL_ARS, extractor=None).fit([])
