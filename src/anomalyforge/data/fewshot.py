"""The leak-free few-shot protocol: which real defects and good images may be learned from.

Per defect type the lowest-numbered third of the defect images (with usable masks) are the only
real defects a generator or model may see; everything else is kept for testing.
"""

from __future__ import annotations

import math
import warnings as _warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from anomalyforge.data.fitdata import FitData
from anomalyforge.data.io import read_mask
from anomalyforge.data.natsort import natural_key
from anomalyforge.data.scan import raise_bad_files
from anomalyforge.data.types import Dataset, FewShotSplit, Sample
from anomalyforge.errors import ConfigError, DataError


class DataWarning(UserWarning):
    """Something in the data a user should know about (e.g. a defect image with an empty mask).

    The message is one line, ``FILE: problem``; the command line prints it as ``warning: FILE: problem``.
    Filter the category to silence them (``warnings.simplefilter("ignore", DataWarning)``)."""


def sample_order(sample: Sample) -> tuple:
    """Natural order of a sample by id, then by file path (total and reproducible)."""
    return (natural_key(sample.id), natural_key(sample.image.as_posix()))


def n_train(n: int, ratio: float) -> int:
    """ceil(n * ratio), robust to float noise (21 * (1/3) counts as exactly 7)."""
    return math.ceil(round(n * ratio, 9))


def _check_fraction(name: str, value: float, *, allow_zero: bool = False) -> None:
    lo_ok = value >= 0 if allow_zero else value > 0
    if not (lo_ok and value < 1):
        raise ConfigError(f"{name} must be {'in [0, 1)' if allow_zero else 'in (0, 1)'}, got {value}")


def has_mask(sample: Sample, threshold: int = 128) -> bool:
    """True when the sample has a mask with at least one defect pixel (decodes the mask)."""
    return sample.mask is not None and bool(read_mask(sample.mask, threshold=threshold).any())


def few_shot_split(dataset: Dataset, ratio: float = 1 / 3, *, holdout: float = 0.2, seed: int = 0,
                   progress: bool | None = None) -> FewShotSplit:
    """Split one category into few-shot training and test parts.

    Defects, per type: images are ordered by natural sort of their id (then path). Images with
    no mask or an empty mask (after binarising at the dataset's threshold) are never training
    examples: they go to the test side and produce a warning. Of the n images with a non-empty
    mask, the first ceil(n * ratio) are training examples; the rest are test. A type whose images
    all lack a usable mask has no training examples and appears only in `test_defects`.

    Good images: `train_good` = the publisher's training good images. `test_good` = its
    `test/good`, else `validation/good`, else (layouts without a split, e.g. Magnetic Tile or a
    generic folder) a held-out `holdout` fraction (at least one image) of the good images,
    drawn with a numpy Generator seeded by `seed` from the naturally sorted list, and removed
    from `train_good`. When `test/good` exists, `validation/good` is used for neither.
    """
    _check_fraction("ratio", ratio)
    _check_fraction("holdout", holdout, allow_zero=True)
    notes: list[str] = []
    alerts: list[str] = []  # the same, as `FILE: problem` lines (emitted as DataWarnings)
    train_defects: dict[str, list[Sample]] = {}
    test_defects: dict[str, list[Sample]] = {}
    defects = sorted(dataset.select(label="defect"), key=sample_order)
    usable: dict[Sample, bool] = {}
    bad: list[tuple[Path, str]] = []
    for s in tqdm(defects, desc=f"{dataset.category}: checking masks", unit="mask", leave=False,
                  disable=(not progress) if progress is not None else None):
        try:
            usable[s] = has_mask(s, dataset.mask_threshold)
        except DataError as exc:  # every bad mask in one error, not the first alone
            bad.append((exc.path or s.mask, exc.problem))
    raise_bad_files(bad, "masks")
    for dtype in dataset.defect_types:
        items = [s for s in defects if s.defect_type == dtype]
        ok = [s for s in items if usable[s]]
        for s in items:
            if not usable[s]:
                why = "has no mask" if s.mask is None else f"has an empty mask ({s.mask.name})"
                notes.append(f"{dtype}: defect image {s.image.name} {why}; kept for testing only")
                alerts.append(f"{s.mask or s.image}: {dataset.category}/{dtype}: defect image {s.image.name} "
                              f"{'has an empty mask' if s.mask is not None else 'has no mask'}; kept for testing only")
        train = ok[:n_train(len(ok), ratio)]
        chosen = set(train)
        if train:
            train_defects[dtype] = train
        else:
            notes.append(f"{dtype}: no defect image with a non-empty mask; no few-shot training examples")
            alerts.append(f"{dataset.root}: {dataset.category}/{dtype}: no defect image with a non-empty mask; "
                          f"no few-shot training examples")
        test_defects[dtype] = [s for s in items if s not in chosen]
    goods = sorted(dataset.select(label="good"), key=sample_order)
    train_good = [s for s in goods if s.split == "train"]
    test_good = [s for s in goods if s.split == "test"] or [s for s in goods if s.split == "validation"]
    if not test_good and holdout > 0 and len(train_good) >= 2:
        k = min(len(train_good) - 1, max(1, round(len(train_good) * holdout)))
        rng = np.random.default_rng(seed)
        picked = set(rng.choice(len(train_good), size=k, replace=False).tolist())
        test_good = [s for i, s in enumerate(train_good) if i in picked]
        train_good = [s for i, s in enumerate(train_good) if i not in picked]
    for alert in alerts:
        _warnings.warn(alert, DataWarning, stacklevel=2)
    split = FewShotSplit(category=dataset.category, train_defects=train_defects, test_defects=test_defects,
                         train_good=train_good, test_good=test_good, ratio=ratio, warnings=notes,
                         mask_threshold=dataset.mask_threshold)
    split.check_disjoint()
    return split


def good_subset(split: FewShotSplit, k: int, seed: int = 0) -> list[Sample]:
    """`k` good training images drawn with a seeded numpy Generator (one-/few-shot good sets).

    Drawn from the naturally sorted training good images and returned in that order, so the same
    (split, k, seed) always gives the same images.
    """
    pool = sorted(split.train_good, key=sample_order)
    if not 1 <= k <= len(pool):
        raise ConfigError(f"good subset size must be in 1..{len(pool)} for {split.category}, got {k}")
    picked = np.random.default_rng(seed).choice(len(pool), size=k, replace=False)
    return [pool[i] for i in sorted(picked.tolist())]


def train_masks(split: FewShotSplit) -> Iterator[np.ndarray]:
    """The masks of the few-shot TRAINING defects, full size, binarised as the dataset's reader
    checked them (what a choice made before the test split may look at, e.g. the input size)."""
    return (read_mask(s.mask, threshold=split.mask_threshold)
            for v in split.train_defects.values() for s in v if s.mask is not None)


def fit_data(split: FewShotSplit, size: int = 256, extra: dict[str, Any] | None = None) -> FitData:
    """What a generator may learn from: the few-shot training defects and training good images."""

    if int(size) < 8:
        raise ConfigError(f"image size must be at least 8, got {size}")
    return FitData(category=split.category, size=int(size),
                             defects={t: list(v) for t, v in split.train_defects.items()},
                             good=list(split.train_good), extra=dict(extra or {}),
                             mask_threshold=split.mask_threshold)
