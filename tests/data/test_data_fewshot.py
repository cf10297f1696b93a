"""The few-shot protocol on the real datasets (expectations from the dataset README and the issue)."""

from __future__ import annotations

import dataclasses
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from datalayouts import make_mvtec, write_mask

from anomalyforge.data import (
    DataWarning,
    FewShotSplit,
    few_shot_split,
    fit_data,
    good_subset,
    load_dataset,
    natural_key,
)
from anomalyforge.data.fitdata import FitData
from anomalyforge.data.io import read_mask
from anomalyforge.errors import ConfigError, DataError

# Published counts (datasets/README.md).
BOTTLE = {"broken_large": 20, "broken_small": 22, "contamination": 21}
MTILE = {"blowhole": 115, "break": 85, "crack": 57, "fray": 32, "uneven": 103}
MTILE_EMPTY_UNEVEN = 4
MTILE_FREE = 952


@pytest.fixture(scope="module")
def bottle(bottle_dir: Path):
    ds = load_dataset(bottle_dir)
    return ds, few_shot_split(ds)


@pytest.fixture(scope="module")
def mtile(mtile_dir: Path):
    ds = load_dataset(mtile_dir)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        split = few_shot_split(ds)
    return ds, split, [str(w.message) for w in caught if issubclass(w.category, DataWarning)]


def test_bottle_protocol(bottle):
    ds, split = bottle
    assert {t: len(ds.select(defect_type=t)) for t in ds.defect_types} == BOTTLE
    for t, n in BOTTLE.items():
        k = math.ceil(n / 3)
        assert len(split.train_defects[t]) == k and len(split.test_defects[t]) == n - k
        # the lowest-numbered images: MVTec ids are 000, 001, ...
        assert [s.id for s in split.train_defects[t]] == [f"{i:03d}" for i in range(k)]
    assert [len(split.train_defects[t]) for t in split.defect_types] == [7, 8, 7]
    assert len(split.train_good) == 209 and len(split.test_good) == 20
    assert all(s.split == "test" for s in split.test_good)
    split.check_disjoint()


def test_juice_bottle_uses_validation_good_as_test_normals(juice_dir: Path):
    ds = load_dataset(juice_dir)
    split = few_shot_split(ds)
    assert ds.format == "mvtec_loco"
    assert len(split.train_defects["logical_anomalies"]) == 48
    assert len(split.test_defects["logical_anomalies"]) == 142 - 48
    assert len(split.test_good) == 54 and all(s.split == "validation" for s in split.test_good)
    assert len(split.train_good) == 335


def test_magnetic_tile_protocol(mtile):
    ds, split, caught = mtile
    assert ds.defect_types == sorted(MTILE)
    for t, n in MTILE.items():
        usable = n - (MTILE_EMPTY_UNEVEN if t == "uneven" else 0)
        assert len(split.train_defects[t]) == math.ceil(usable / 3)
        assert len(split.train_defects[t]) + len(split.test_defects[t]) == n
    empty = [w for w in caught if "empty mask" in w]
    assert len(empty) == MTILE_EMPTY_UNEVEN and all("uneven" in w for w in empty)
    assert len(split.warnings) == len(caught)
    # emitted as `FILE: problem`: the empty mask, then what it means
    assert all(Path(w.split(": ", 1)[0]).is_file() and w.split(": ")[1].startswith("magnetic_tile/")
               for w in caught)
    # empty-mask images are never training examples, only test examples
    for s in (x for v in split.train_defects.values() for x in v):
        assert read_mask(s.mask).any()
    empties = [s for s in split.test_defects["uneven"] if not read_mask(s.mask).any()]
    assert len(empties) == MTILE_EMPTY_UNEVEN
    # train = lowest ids by natural (numeric) order among the non-empty
    ids = [s.id for s in split.train_defects["blowhole"]]
    assert ids == sorted(ids, key=natural_key)
    assert max(map(natural_key, ids)) < min(natural_key(s.id) for s in split.test_defects["blowhole"])


def test_magnetic_tile_good_held_out_deterministically(mtile):
    ds, split, _ = mtile
    assert len(split.train_good) + len(split.test_good) == MTILE_FREE
    assert len(split.test_good) == round(MTILE_FREE * 0.2)
    goods = dataclasses.replace(ds, samples=ds.select(label="good"))  # skip the defect-mask decoding
    again, other, less = few_shot_split(goods), few_shot_split(goods, seed=1), few_shot_split(goods, holdout=0.1)
    assert [s.image for s in again.test_good] == [s.image for s in split.test_good]
    assert [s.image for s in other.test_good] != [s.image for s in split.test_good]
    assert len(less.test_good) == round(MTILE_FREE * 0.1)
    split.check_disjoint()


def test_ratio_rule_counts_only_non_empty_masks(tmp_path: Path):
    root = make_mvtec(tmp_path / "w", {"scratch": 7}, n_good=3)
    for i in (0, 3):
        write_mask(root / "ground_truth" / "scratch" / f"{i:03d}_mask.png", box=None)
    ds = load_dataset(root)
    with pytest.warns(DataWarning, match=r"000_mask\.png: w/scratch: defect image 000.png has an empty mask"):
        split = few_shot_split(ds)
    assert [s.id for s in split.train_defects["scratch"]] == ["001", "002"]  # ceil(5/3) of the 5 usable
    assert [s.id for s in split.test_defects["scratch"]] == ["000", "003", "004", "005", "006"]
    with pytest.warns(DataWarning):
        half = few_shot_split(ds, ratio=0.5)
    assert [s.id for s in half.train_defects["scratch"]] == ["001", "002", "004"]
    for bad in (0, 1, -0.1, 1.5):
        with pytest.raises(ConfigError, match="ratio"):
            few_shot_split(ds, ratio=bad)


def test_check_disjoint_catches_a_leak(bottle):
    _, split = bottle
    leaky = FewShotSplit(split.category, split.train_defects, split.test_defects,
                         split.train_good, split.test_good + split.train_good[:1], split.ratio)
    with pytest.raises(DataError, match="both the training and the test split"):
        leaky.check_disjoint()


def test_good_subset_is_seeded(bottle):
    _, split = bottle
    a, b, c = good_subset(split, 5, seed=3), good_subset(split, 5, seed=3), good_subset(split, 5, seed=4)
    assert a == b and a != c and len(set(a)) == 5
    assert set(a) <= set(split.train_good)
    assert good_subset(split, 1, seed=0)[0] in split.train_good
    with pytest.raises(ConfigError, match="1..209"):
        good_subset(split, 210)


def test_fit_data_serves_only_the_training_split(bottle):
    _, split = bottle
    data = fit_data(split, size=64, extra={"note": 1})
    assert isinstance(data, FitData) and data.size == 64 and data.extra == {"note": 1}
    assert data.defects == split.train_defects and data.good == split.train_good
    s = data.defects["broken_large"][0]
    img, mask = data.image(s), data.mask(s)
    assert img.shape == (64, 64, 3) and mask.shape == (64, 64)
    assert set(np.unique(mask)) == {0, 255}
    with pytest.raises(ConfigError, match="size"):
        fit_data(split, size=0)
