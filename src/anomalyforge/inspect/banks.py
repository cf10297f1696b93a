"""PatchCore fitted from a profile, and a cache of fitted banks shared within one process.

The benchmark scores the PatchCore baseline and a fused localiser (whose PatchCore part is the same
model: the profile's settings, the seed and the same good training images). Fitting the bank is
the costly part (greedy coreset selection), so a `BankCache` handed to both fits it once. The key
holds everything that decides the bank, so a cache can never return a bank of other images or
settings; a cached model is only read (predict), never refit. A backbone with random weights
(weights None, tests only) is not reproducible from the key, so such a fit is never cached.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from anomalyforge.data.fitdata import FitData
from anomalyforge.inspect.patchcore import PatchCore
from anomalyforge.inspect.profiles import Profile, backbone_arch


def bank_key(fit: FitData, profile: Profile, seed: int, weights: str | None) -> tuple:
    """What decides a fitted bank: PatchCore settings, backbone, seed, input size, image files."""
    return (profile.pc_levels, profile.pc_coreset, profile.pc_projection, profile.pc_sigma, profile.pc_max_bank,
            profile.pc_candidates, backbone_arch(profile), weights, str(profile.device), profile.size, seed,
            tuple(str(s.image) for s in fit.good))


def new_patchcore(profile: Profile, seed: int, weights: str | None) -> PatchCore:
    """An unfitted PatchCore with the profile's settings."""
    return PatchCore(profile.pc_levels, profile.pc_coreset, profile.pc_projection, profile.pc_sigma, seed,
                     profile.device, weights=weights, max_bank=profile.pc_max_bank,
                     candidates=profile.pc_candidates, arch=backbone_arch(profile))


class BankCache:
    """Fitted PatchCore models by `bank_key`; `hits` counts the fits it saved."""

    def __init__(self) -> None:
        self._fitted: dict[tuple, PatchCore] = {}
        self.hits = 0

    def __len__(self) -> int:
        return len(self._fitted)

    def get(self, key: tuple, fit: Callable[[], PatchCore]) -> PatchCore:
        """The model fitted for `key`, calling `fit` only the first time."""
        if key in self._fitted:
            self.hits += 1
        else:
            self._fitted[key] = fit()
        return self._fitted[key]


def fit_patchcore(fit: FitData, images: Callable[[], np.ndarray], profile: Profile, seed: int,
                  weights: str | None, progress: bool = True, cache: BankCache | None = None) -> PatchCore:
    """PatchCore fitted on `fit.good` (`images()` reads them, only when a fit is needed), through
    `cache` when one is given and the backbone has weights."""
    def build() -> PatchCore:
        return new_patchcore(profile, seed, weights).fit(images(), progress)
    if cache is None or weights is None:
        return build()
    return cache.get(bank_key(fit, profile, seed, weights), build)


__all__ = ["BankCache", "bank_key", "fit_patchcore", "new_patchcore"]
