import numpy as np
import pytest

from anomalyforge.data.io import read_mask
from anomalyforge.masks.enhance import EnhanceConfig, area_factor, enhance_mask
from anomalyforge.masks.placement import iou


@pytest.fixture(scope="module")
def real_masks(bottle_dir):
    gt = bottle_dir / "ground_truth"
    return [read_mask(gt / t / "000_mask.png", 128) for t in ("broken_large", "broken_small", "contamination")]


def test_area_factor_formula():
    assert area_factor(100, 100) == pytest.approx(1.0)
    assert area_factor(100, 400, alpha=0.5) == pytest.approx(0.5 * 2 + 0.5 * 4 ** (1 / 3))
    assert area_factor(400, 100, alpha=1.0) == pytest.approx(0.5)


def test_enhanced_mask_is_a_varied_but_recognisable_defect(real_masks):
    for m in real_masks:
        a = enhance_mask(m, np.random.default_rng(1))
        b = enhance_mask(m, np.random.default_rng(1))
        c = enhance_mask(m, np.random.default_rng(2))
        assert set(np.unique(a)) <= {0, 255} and a.any()
        assert np.array_equal(a, b)  # same seed, same mask
        assert not np.array_equal(a, c)  # another seed varies it
        assert not np.array_equal(a, m)
        assert iou(a, m) > 0.3  # still the same defect


def test_area_adaptive_scaling_moves_towards_mean(real_masks):
    m = real_masks[1]  # a small defect
    area = (m > 0).sum()
    cfg = EnhanceConfig(perturb=0.0)
    grown = (enhance_mask(m, np.random.default_rng(0), cfg, mean_area=4 * area) > 0).sum()
    plain = (enhance_mask(m, np.random.default_rng(0), cfg) > 0).sum()
    assert plain < grown < 4 * area * 1.1
    shrunk = (enhance_mask(m, np.random.default_rng(0), cfg, mean_area=area / 4) > 0).sum()
    assert shrunk < plain


def test_empty_mask_stays_empty():
    assert not enhance_mask(np.zeros((32, 32), np.uint8), np.random.default_rng(0)).any()
