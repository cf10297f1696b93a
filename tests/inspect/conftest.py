"""Fixtures for the inspection tests: the real bottle few-shot split and crop-paste pairs.

The split comes from `anomalyforge.data` (lowest-numbered third of each defect type). Pairs are real few-shot defects pasted onto good training images (numpy), so models are
trained on realistic data without depending on the synthesis package.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from anomalyforge.data.types import FewShotSplit
from anomalyforge.inspect.pairs import GeneratedPairs
from anomalyforge.synth.base import FitData


def croppaste(fit: FitData, n_per_type: int, seed: int) -> GeneratedPairs:
    """Paste each few-shot defect region (random flip / 90-degree turn) onto random good images."""
    rng = np.random.default_rng(seed)
    imgs, masks, types = [], [], []
    for dt in fit.defect_types:
        for _ in range(n_per_type):
            src = fit.defects[dt][rng.integers(len(fit.defects[dt]))]
            good = fit.image(fit.good[rng.integers(len(fit.good))]).copy()
            im, m = fit.image(src), fit.mask(src) > 0
            k = int(rng.integers(4))
            im, m = np.rot90(im, k), np.rot90(m, k)
            if rng.random() < 0.5:
                im, m = im[:, ::-1], m[:, ::-1]
            good[m] = im[m]
            imgs.append(good)
            masks.append(m.astype(np.uint8) * 255)
            types.append(dt)
    return GeneratedPairs(np.stack(imgs), np.stack(masks), types, fit.category)


@pytest.fixture(scope="session")
def bottle_split(bottle_dir: Path) -> FewShotSplit:
    from anomalyforge.data import few_shot_split, load_dataset

    return few_shot_split(load_dataset(bottle_dir), progress=False)


@pytest.fixture(scope="session")
def bottle_fit64(bottle_split: FewShotSplit) -> FitData:
    """Few-shot bottle training data at 64 px with 12 good images (smoke scale)."""
    return FitData(bottle_split.category, 64, bottle_split.train_defects, bottle_split.train_good[:12])


@pytest.fixture(scope="session")
def bottle_pairs64(bottle_fit64: FitData) -> GeneratedPairs:
    return croppaste(bottle_fit64, 6, seed=0)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One torch thread per test here: on the shared, oversubscribed CI machine two threads
    spend most of their time waiting for each other. Restored afterwards (not global)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
