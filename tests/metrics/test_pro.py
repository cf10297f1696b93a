"""AUPRO against an independent brute-force PRO curve (skimage regions, direct counting)."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.measure import label

from anomalyforge.data.io import read_mask
from anomalyforge.metrics import MetricError, aupro, aupro_binned_error_bound, pro_curve


def brute_force_curve(maps: list[np.ndarray], masks: list[np.ndarray]):
    """(FPR, PRO) evaluated directly at every distinct score, plus (0, 0) and (1, 1).

    The PRO curve only changes where the threshold crosses a score, so evaluating at every
    distinct score gives every vertex of the exact curve.
    """
    regions, good = [], []
    for m, g in zip(maps, masks, strict=False):
        lab = label(g > 0, connectivity=2)  # 8-connectivity, as the MVTec reference
        regions += [m[lab == k] for k in range(1, lab.max() + 1)]
        good.append(m[lab == 0])
    good_all = np.concatenate(good)
    fprs, pros = [0.0], [0.0]
    for t in np.unique(np.concatenate([m.ravel() for m in maps]))[::-1]:
        fprs.append(np.count_nonzero(good_all >= t) / good_all.size)
        pros.append(np.mean([np.count_nonzero(r >= t) / r.size for r in regions]))
    return np.array(fprs + [1.0]), np.array(pros + [1.0])


def brute_force_aupro(maps, masks, limit: float) -> float:
    """Walk the segments, clipping the one that crosses ``limit`` by linear interpolation."""
    x, y = brute_force_curve(maps, masks)
    area = 0.0
    for i in range(len(x) - 1):
        x0, x1, y0, y1 = x[i], x[i + 1], y[i], y[i + 1]
        if x0 >= limit:
            break
        if x1 > limit:
            y1 = y0 + (y1 - y0) * (limit - x0) / (x1 - x0)
            x1 = limit
        area += (x1 - x0) * (y0 + y1) / 2
    return area / limit


def _synthetic(seed: int, n: int = 6, size: int = 24, levels: int | None = 12):
    """Masks with several blobs (some touching only diagonally), good images, tied scores."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, size, size), np.uint8)
    for i in range(n - 2):  # the last two images are good
        for _ in range(rng.integers(1, 4)):
            r, c = rng.integers(0, size - 4, 2)
            h, w = rng.integers(1, 5, 2)
            masks[i, r : r + h, c : c + w] = 255
    masks[0, 20, 20] = masks[0, 21, 21] = 255  # one region under 8-, two under 4-connectivity
    maps = rng.random((n, size, size)) + 0.8 * (masks > 0) * rng.random((n, size, size))
    if levels is not None:
        maps = np.floor(maps * levels) / levels
    return maps, masks


@pytest.mark.parametrize("seed,levels", [(0, 12), (1, None), (2, 3), (3, 40)])
@pytest.mark.parametrize("limit", [0.3, 0.05, 1.0])
def test_matches_brute_force(seed, levels, limit):
    maps, masks = _synthetic(seed, levels=levels)
    assert aupro(maps, masks, fpr_limit=limit) == pytest.approx(
        brute_force_aupro(list(maps), list(masks), limit), abs=1e-6
    )


def test_curve_matches_brute_force_and_limit_on_a_vertex():
    maps, masks = _synthetic(4, levels=10)
    curve = pro_curve(maps, masks)
    x, y = brute_force_curve(list(maps), list(masks))
    np.testing.assert_allclose(curve.fpr, x, atol=1e-12)
    np.testing.assert_allclose(curve.pro, y, atol=1e-12)
    vertex = float(x[len(x) // 2])  # a limit exactly on a curve point: no interpolation
    assert aupro(maps, masks, vertex) == pytest.approx(
        brute_force_aupro(list(maps), list(masks), vertex), abs=1e-9
    )


def test_eight_connectivity_counts_diagonal_pixels_as_one_region():
    mask = np.zeros((1, 8, 8), bool)
    mask[0, 1, 1] = mask[0, 2, 2] = True  # one region under 8-connectivity (two under 4)
    mask[0, 6, 6] = True  # a second, separate region
    maps = np.zeros((1, 8, 8))
    maps[0, 1, 1] = 1.0  # only one pixel of the diagonal pair is found
    curve = pro_curve(maps, mask)
    # 8-connectivity: (1/2 + 0) / 2 regions = 0.25; 4-connectivity would give (1 + 0 + 0) / 3
    assert curve.fpr[1] == 0.0 and curve.pro[1] == pytest.approx(0.25)


def test_perfect_and_inverted_maps():
    maps, masks = _synthetic(5, levels=None)
    assert aupro(masks / 255.0, masks) == pytest.approx(1.0)
    assert aupro(1.0 - masks / 255.0, masks) == pytest.approx(0.0)


def test_real_bottle_masks(bottle_dir):
    gt = bottle_dir / "ground_truth"
    paths = sorted((gt / "broken_small").glob("*.png"))[:3] + sorted(
        (gt / "contamination").glob("*.png")
    )[:2]
    masks = [read_mask(p, 48) for p in paths] + [np.zeros((48, 48), np.uint8)] * 2
    rng = np.random.default_rng(0)
    maps = [np.round(rng.random((48, 48)) + 0.5 * (m > 0), 2) for m in masks]
    assert sum(label(m > 0, connectivity=2).max() for m in masks) >= 5
    value = aupro(maps, masks)
    assert value == pytest.approx(brute_force_aupro(maps, masks, 0.3), abs=1e-6)
    assert 0.0 < value < 1.0


def test_maps_of_different_sizes():
    maps, masks = _synthetic(6, levels=8)
    big_map, big_mask = np.kron(maps[0], np.ones((2, 2))), np.kron(masks[0], np.ones((2, 2)))
    ml, kl = [big_map, *maps[1:]], [big_mask, *masks[1:]]
    assert aupro(ml, kl) == pytest.approx(brute_force_aupro(ml, kl, 0.3), abs=1e-6)


def test_binned_points_lie_on_exact_curve():
    maps, masks = _synthetic(7, n=8, size=48, levels=None)
    exact = pro_curve(maps, masks)
    binned = pro_curve(maps, masks, bins=32)
    assert binned.fpr.size < exact.fpr.size
    pts = {(round(a, 12), round(b, 12)) for a, b in zip(exact.fpr, exact.pro, strict=False)}
    assert all((round(a, 12), round(b, 12)) in pts for a, b in zip(binned.fpr, binned.pro, strict=False))
    assert abs(aupro(maps, masks, bins=4096) - aupro(maps, masks)) < 2e-3


@pytest.mark.parametrize("bins", [4, 16, 256])
@pytest.mark.parametrize("limit", [0.3, 0.02, 1.0])
def test_binned_aupro_within_reported_bound(bins, limit):
    maps, masks = _synthetic(8, n=8, size=48, levels=None)
    err = abs(aupro(maps, masks, limit, bins=bins) - aupro(maps, masks, limit))
    assert err <= aupro_binned_error_bound(maps, masks, bins, limit) + 1e-12


def test_binned_aupro_exact_when_bins_separate_all_scores():
    maps, masks = _synthetic(9, levels=5)  # scores k / 5, k = 0..9: each gets its own bin
    assert aupro(maps, masks, bins=10) == pytest.approx(aupro(maps, masks), abs=1e-12)
    assert aupro_binned_error_bound(maps, masks, 10) == 0.0
    assert aupro_binned_error_bound(maps, masks, 3) > 0.0


BAD = [
    (np.ones((2, 8, 8)), np.zeros((2, 8, 8)), "no defect region"),
    (np.ones((1, 8, 8)), np.ones((1, 8, 8)), "no good pixel"),
    (np.ones((2, 8, 8)), np.ones((2, 8, 9)), "shape mismatch"),
    (np.ones((2, 8, 8)), np.ones((3, 8, 8)), "shape mismatch"),
    (np.full((1, 4, 4), np.nan), np.eye(4)[None], "NaN"),
    (np.ones((1, 1, 4, 4)), np.ones((1, 1, 4, 4)), "shape"),
    (np.ones((1, 4, 4)), np.eye(4)[None] * 3, "binary"),
]


@pytest.mark.parametrize("maps,masks,words", BAD)
def test_degenerate_input_raises(maps, masks, words):
    with pytest.raises(MetricError, match=words):
        aupro(maps, masks)


@pytest.mark.parametrize("limit", [0, -0.1, 1.5, "0.3", None, True])
def test_bad_fpr_limit(limit):
    with pytest.raises(MetricError, match="fpr_limit"):
        aupro(np.ones((1, 4, 4)), np.eye(4)[None], fpr_limit=limit)
    with pytest.raises(MetricError, match="fpr_limit"):
        aupro_binned_error_bound(np.ones((1, 4, 4)), np.eye(4)[None], 8, fpr_limit=limit)
