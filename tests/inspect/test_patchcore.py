import numpy as np
import pytest
import torch

from anomalyforge.errors import ConfigError
from anomalyforge.inspect.patchcore import PatchCore, greedy_coreset


def test_greedy_coreset_spreads_over_clusters():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0], [10, 0], [0, 10], [10, 10]])
    pts = torch.cat([c + 0.1 * torch.randn(50, 2, generator=g) for c in centres])
    idx = greedy_coreset(pts, 4, 0, torch.Generator().manual_seed(1))
    assert len(set(idx.tolist())) == 4
    assert sorted((pts[idx] / 10).round().abs().tolist()) == sorted(centres.div(10).tolist())


def test_patchcore_finds_real_defects(bottle_fit64):
    fit = bottle_fit64
    good = np.stack([fit.image(s) for s in fit.good])
    pc = PatchCore((2, 3), coreset=0.5, projection=32, seed=0, max_bank=2000).fit(good, progress=False)
    defects = [s for v in fit.defects.values() for s in v]
    imgs = np.stack([fit.image(s) for s in defects])
    masks = np.stack([fit.mask(s) > 0 for s in defects])
    maps = pc.predict(imgs)
    assert maps.shape == masks.shape
    assert maps[masks].mean() > 1.3 * maps[~masks].mean()
    # defect images score above the (training) good images they are compared with
    good_maps = pc.predict(good[:4])
    assert np.median(maps.reshape(len(maps), -1).max(1)) > np.median(good_maps.reshape(4, -1).max(1))
    again = PatchCore((2, 3), coreset=0.5, projection=32, seed=0, max_bank=2000).fit(good, progress=False)
    np.testing.assert_allclose(again.predict(imgs[:2]), maps[:2], rtol=1e-4)  # same bank, same maps


def test_patchcore_rejects_bad_settings():
    with pytest.raises(ConfigError, match="coreset"):
        PatchCore(coreset=0, weights=None)
    with pytest.raises(ConfigError, match="before fit"):
        PatchCore(weights=None).predict(np.zeros((1, 32, 32, 3), np.uint8))
