"""Image score = max of the average-pooled map, checked against an explicit window loop."""

from __future__ import annotations

import numpy as np
import pytest

from anomalyforge.metrics import MetricError, default_pool, image_scores_from_maps


def _loop_score(m: np.ndarray, k: int) -> float:
    h, w = m.shape
    return max(m[r : r + k, c : c + k].mean() for r in range(h - k + 1) for c in range(w - k + 1))


@pytest.mark.parametrize("k", [1, 2, 3, 4, 7])
def test_matches_explicit_windows_for_odd_and_even_pools(k):
    rng = np.random.default_rng(k)
    maps = rng.random((3, 13, 17)).astype(np.float32)
    got = image_scores_from_maps(maps, pool=k)
    assert got.shape == (3,) and got.dtype == np.float64
    np.testing.assert_allclose(got, [_loop_score(m.astype(np.float64), k) for m in maps],
                               rtol=1e-9)


def test_pool_one_is_max_and_pooling_damps_single_hot_pixels():
    maps = np.zeros((2, 32, 32))
    maps[0, 5, 5] = 1.0  # one hot pixel
    maps[1, 10:14, 10:14] = 0.5  # a small defect
    assert np.array_equal(image_scores_from_maps(maps, pool=1), [1.0, 0.5])
    pooled = image_scores_from_maps(maps, pool=4)
    assert pooled[1] > pooled[0]  # the defect now outranks the isolated pixel


def test_default_pool_scales_with_size_and_large_pools_clamp():
    assert default_pool(256, 256) == 16 and default_pool(512, 300) == 19
    assert default_pool(8, 8) == 1
    rng = np.random.default_rng(0)
    m = rng.random((64, 64))
    assert image_scores_from_maps(m)[0] == pytest.approx(_loop_score(m, 4))
    assert image_scores_from_maps(m, pool=1000)[0] == pytest.approx(m.mean())
    maps = [rng.random((40, 40)), rng.random((20, 30))]  # different sizes are fine
    assert image_scores_from_maps(maps, pool=3).shape == (2,)


@pytest.mark.parametrize("pool", [0, -3, 2.5, True])
def test_bad_pool(pool):
    with pytest.raises(MetricError, match="pool"):
        image_scores_from_maps(np.zeros((1, 8, 8)), pool=pool)


def test_bad_maps():
    with pytest.raises(MetricError, match="NaN"):
        image_scores_from_maps(np.full((1, 8, 8), np.nan))
    with pytest.raises(MetricError, match="shape"):
        image_scores_from_maps(np.zeros(8))


def test_map_containers():
    nested = [[0.0, 1.0], [2.0, 3.0]]  # plain nested lists = one 2x2 map
    assert np.array_equal(image_scores_from_maps(nested, pool=1), [3.0])
    assert np.array_equal(image_scores_from_maps([nested, nested], pool=1), [3.0, 3.0])
    for bad, words in [([np.zeros(3), np.zeros((2, 2))], r"maps\[0\] must be 2-D"),
                       ([], "empty"), (np.zeros((1, 1, 2, 2)), "shape")]:
        with pytest.raises(MetricError, match=words):
            image_scores_from_maps(bad)
