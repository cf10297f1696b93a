import cv2
import numpy as np
import pytest

from anomalyforge.masks.placement import NoPlacement, combine_masks, iou, place_mask


def _disc(size=128, r=40):
    m = np.zeros((size, size), np.uint8)
    cv2.circle(m, (size // 2, size // 2), r, 255, -1)
    return m


def _blob():
    m = np.zeros((60, 60), np.uint8)
    cv2.ellipse(m, (30, 30), (12, 5), 30, 0, 360, 255, -1)
    m[10:14, 40:50] = 255  # two parts
    return m


def test_inside_placement_stays_in_region_and_transform_matches():
    region, mask = _disc(), _blob()
    rng = np.random.default_rng(0)
    for _ in range(10):
        placed, off, mat = place_mask(mask, region, rng, "inside", rotation=180, scale=(0.8, 1.25),
                                      flip=True, min_inside=1.0)
        assert placed.shape == region.shape and placed.any()
        assert not (placed & ~region).any()
        warped = cv2.warpAffine(mask, mat, region.shape[::-1], flags=cv2.INTER_NEAREST)
        assert iou(warped, placed) > 0.8  # the transform says where the mask went


def test_pure_translation_keeps_the_mask_exactly():
    region, mask = _disc(), _blob()
    placed, (dx, dy), mat = place_mask(mask, region, np.random.default_rng(3), "inside")
    assert (placed > 0).sum() == (mask > 0).sum()
    ys, xs = np.nonzero(mask)
    assert placed[ys[0] + dy, xs[0] + dx] == 255
    assert np.allclose(mat[:, :2], np.eye(2))


def test_edge_placement_touches_the_outline():
    region, mask = _disc(), _blob()
    inner = cv2.erode(region, np.ones((9, 9), np.uint8))
    rng = np.random.default_rng(1)
    for _ in range(5):
        placed, _, _ = place_mask(mask, region, rng, "edge", min_inside=0.9)
        assert (placed & ~inner).any()  # reaches the outline band
        assert ((placed > 0) & (region > 0)).sum() >= 0.9 * (placed > 0).sum()


def test_region_mode_and_failures():
    region = _disc()
    placed, off, _ = place_mask(_blob(), region, np.random.default_rng(0), "region")
    assert np.array_equal(placed, region) and off == (0, 0)
    with pytest.raises(NoPlacement):
        place_mask(np.full((120, 120), 255, np.uint8), _disc(r=20), np.random.default_rng(0), "inside")
    with pytest.raises(NoPlacement):
        place_mask(np.zeros((8, 8), np.uint8), region, np.random.default_rng(0))


def test_placement_is_deterministic():
    a = place_mask(_blob(), _disc(), np.random.default_rng(7), rotation=90, scale=(0.8, 1.2))
    b = place_mask(_blob(), _disc(), np.random.default_rng(7), rotation=90, scale=(0.8, 1.2))
    assert np.array_equal(a[0], b[0]) and np.allclose(a[2], b[2])


def test_combined_masks_do_not_overlap_much():
    union, parts = combine_masks([_blob()] * 4, _disc(), np.random.default_rng(0), max_iou=0.05,
                                 rotation=180)
    assert len(parts) >= 2
    for i in range(len(parts)):
        for j in range(i + 1, len(parts)):
            assert iou(parts[i][0], parts[j][0]) <= 0.05
    assert np.array_equal(union > 0, np.any([p[0] > 0 for p in parts], axis=0))
