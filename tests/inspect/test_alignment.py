"""The trained localisers' maps are in image coordinates (row = y, column = x), like PatchCore's
(tests/inspect/test_patchcore.py): a wide stripe patch placed off the diagonal lights up where it
is, not at its transpose, and in its own image of a batch, not in a neighbour's."""

from __future__ import annotations

import numpy as np
import pytest

from anomalyforge.data.fitdata import FitData
from anomalyforge.inspect.pairs import GeneratedPairs
from anomalyforge.inspect.profiles import get_profile
from anomalyforge.inspect.train import FusedLocalizer, Localizer, train_localizer
from anomalyforge.metrics.ranking import auroc
from inspectdata import off_diagonal_defect, stripe_patch


def _stripe_pairs(fit: FitData, n: int, seed: int) -> GeneratedPairs:
    """Stripe patches of random size anywhere on the good training images (no position to learn)."""
    rng = np.random.default_rng(seed)
    imgs, masks = [], []
    for _ in range(n):
        good = fit.image(fit.good[rng.integers(len(fit.good))])
        h, w = int(rng.integers(8, 16)), int(rng.integers(16, 28))
        img, m = stripe_patch(good, int(rng.integers(0, 64 - h)), int(rng.integers(0, 64 - w)), h, w)
        imgs.append(img)
        masks.append(m.astype(np.uint8) * 255)
    return GeneratedPairs(np.stack(imgs), np.stack(masks), ["stripes"] * n, fit.category)


@pytest.fixture(scope="module")
def unseen_goods(bottle_split) -> np.ndarray:
    """Two good training images no model here trains on (the fit uses the first 12)."""
    fit = FitData(bottle_split.category, 64, bottle_split.train_defects, bottle_split.train_good[12:14])
    return np.stack([fit.image(s) for s in fit.good])


@pytest.mark.parametrize("fusion", [0.0, 0.5])
def test_trained_localizer_map_is_aligned_with_the_image(bottle_fit64, unseen_goods, fusion):
    prof = get_profile("smoke", steps=30, lr=3e-3, fusion=fusion, fusion_holdout=0.25)
    model = train_localizer(bottle_fit64, _stripe_pairs(bottle_fit64, 24, seed=0), prof, seed=0, progress=False)
    assert isinstance(model, FusedLocalizer if fusion else Localizer)
    test, mask = zip(*[off_diagonal_defect(g) for g in unseen_goods], strict=True)
    maps = model.predict(np.stack([unseen_goods[0], test[0], unseen_goods[1], test[1]]))
    assert maps.shape == (4, 64, 64)
    for k in (1, 3):
        m, own, mirror = maps[k], mask[k // 2], mask[k // 2].T
        # ranks the patch's own pixels far above the rest, its transposed footprint much less
        # (measured: supervised 1.0 / 0.68, fused 1.0 / 0.68; a transposed map swaps the two)
        assert auroc(m, own) > 0.95 and auroc(m, own) > auroc(m, mirror) + 0.15
        assert m[own].mean() > m[mirror].mean() + 0.1
        y, x = np.unravel_index(np.argmax(m), m.shape)
        assert 4 <= y < 24 and 30 <= x < 62  # the peak is on the patch
        assert m[own].mean() > maps[k - 1][own].mean() + 0.2  # this image's map, not its clean neighbour's
