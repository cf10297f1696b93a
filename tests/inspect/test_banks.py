import dataclasses

import pytest
import torch

from anomalyforge.inspect.banks import BankCache, bank_key, fit_patchcore
from anomalyforge.inspect.profiles import get_profile
from anomalyforge.inspect.train import good_images


def _fit(fit, prof, seed, cache, weights="imagenet"):
    calls = []

    def images():
        calls.append(1)
        return good_images(fit, prof.size, False)
    return fit_patchcore(fit, images, prof, seed, weights, False, cache), len(calls)


def test_cache_fits_a_bank_once_and_it_equals_an_uncached_fit(bottle_fit64):
    prof = get_profile("smoke")
    cache = BankCache()
    a, read_a = _fit(bottle_fit64, prof, 0, cache)
    b, read_b = _fit(bottle_fit64, prof, 0, cache)
    assert b is a and (read_a, read_b) == (1, 0) and cache.hits == 1 and len(cache) == 1
    fresh, _ = _fit(bottle_fit64, prof, 0, None)  # no cache: fitted again, to the same bank
    assert fresh is not a and torch.equal(fresh.bank, a.bank)
    other, read = _fit(bottle_fit64, prof, 1, cache)  # another seed: another bank
    assert other is not a and read == 1 and len(cache) == 2


def test_random_weight_backbones_are_never_shared(bottle_fit64):
    prof, cache = get_profile("smoke"), BankCache()
    a, _ = _fit(bottle_fit64, prof, 0, cache, weights=None)
    b, read = _fit(bottle_fit64, prof, 0, cache, weights=None)
    assert b is not a and read == 1 and len(cache) == 0


@pytest.mark.parametrize("change", ["seed", "goods", "coreset", "size", "weights"])
def test_anything_that_decides_the_bank_changes_the_key(bottle_fit64, change):
    prof = get_profile("smoke")
    base = bank_key(bottle_fit64, prof, 0, None)
    fit, seed, weights = bottle_fit64, 0, None
    if change == "seed":
        seed = 1
    elif change == "goods":
        fit = dataclasses.replace(bottle_fit64, good=bottle_fit64.good[1:])
    elif change == "coreset":
        prof = dataclasses.replace(prof, pc_coreset=0.2)
    elif change == "size":
        prof = dataclasses.replace(prof, size=96)
    else:
        weights = "/some/other/weights.pth"
    assert bank_key(fit, prof, seed, weights) != base
    assert bank_key(bottle_fit64, get_profile("smoke"), 0, None) == base
