"""Generated good images (few-shot detection): seeded, nested, and exact when every range is 0."""

from __future__ import annotations

import numpy as np
import pytest

from anomalyforge.data.io import read_image
from anomalyforge.errors import ConfigError
from anomalyforge.synth.good import GoodAugmentConfig, augment_goods


@pytest.fixture(scope="module")
def goods(bottle_dir):
    paths = sorted((bottle_dir / "train" / "good").glob("*.png"))[:2]
    return np.stack([read_image(p, 128) for p in paths])


def test_variants_are_seeded_and_nested(goods):
    a = augment_goods(goods, 6, seed=3)
    assert a.shape == (6, 128, 128, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, augment_goods(goods, 6, seed=3))
    np.testing.assert_array_equal(a[:3], augment_goods(goods, 3, seed=3))  # independent of n
    assert not np.array_equal(a, augment_goods(goods, 6, seed=4))


def test_zero_ranges_reproduce_the_goods_exactly_in_cycle(goods):
    still = GoodAugmentConfig(rotation=0, translate=0, scale=(1, 1), brightness=0, contrast=0)
    np.testing.assert_array_equal(augment_goods(goods, 4, config=still), np.concatenate([goods, goods]))


def test_default_variants_stay_small_changes_of_real_images(goods):
    v = augment_goods(goods[:1], 8, seed=0)
    diff = np.abs(v.astype(int) - goods[0].astype(int)).mean(axis=(1, 2, 3))
    assert (diff > 0.5).all() and (diff < 40).all()
    flips = augment_goods(goods[:1], 8, seed=0, config=GoodAugmentConfig(flip=True, rotation=0, translate=0,
                                                                          scale=(1, 1), brightness=0, contrast=0))
    assert any(np.array_equal(f, goods[0][:, ::-1]) or np.array_equal(f, goods[0][::-1]) for f in flips)


@pytest.mark.parametrize("kw", [{"rotation": -1}, {"translate": 0.6}, {"scale": (1.1, 1.0)}, {"brightness": 1.5}])
def test_bad_ranges_are_rejected(kw):
    with pytest.raises(ConfigError):
        GoodAugmentConfig(**kw)


def test_bad_shapes_are_rejected(goods):
    with pytest.raises(ConfigError):
        augment_goods(goods[0], 2)
    with pytest.raises(ConfigError):
        augment_goods(goods, -1)
