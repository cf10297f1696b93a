"""Test helper shared by the inspection tests (a uniquely named module: several test folders
have a conftest.py, so `from conftest import ...` would pick whichever was imported first)."""

from __future__ import annotations

import numpy as np

from anomalyforge.data.fitdata import FitData
from anomalyforge.inspect.pairs import GeneratedPairs


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
