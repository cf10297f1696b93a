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


def stripe_patch(img: np.ndarray, y: int, x: int, h: int = 12, w: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """`img` with a flat patch of vertical black/white stripes (2 px wide) at rows y:y+h, columns
    x:x+w, and its mask (bool). Wide and placed off the diagonal, it is asymmetric: a map with h
    and w swapped lights up somewhere else entirely."""
    out, mask = img.copy(), np.zeros(img.shape[:2], bool)
    mask[y:y + h, x:x + w] = True
    stripes = np.where((np.arange(x, x + w) // 2) % 2 == 0, 250, 5).astype(np.uint8)
    out[y:y + h, x:x + w] = stripes[None, :, None]
    return out, mask


def off_diagonal_defect(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`stripe_patch` in the upper right of a 64 px image (rows 8:20, columns 34:58)."""
    return stripe_patch(img, 8, 34)
