import numpy as np
import pytest
import torch

from anomalyforge.errors import ConfigError
from anomalyforge.inspect.patchcore import PatchCore, greedy_coreset
from anomalyforge.metrics.ranking import auroc
from inspectdata import off_diagonal_defect


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
    # ranks real defect pixels well (0.92 measured), and only in image coordinates: the same maps
    # transposed rank them clearly worse (0.83), so a swapped h/w cannot pass
    px = auroc(maps, masks)
    assert px > 0.85 and px > auroc(maps.transpose(0, 2, 1), masks) + 0.04
    # defect images score above the (training) good images they are compared with
    good_maps = pc.predict(good[:4])
    assert np.median(maps.reshape(len(maps), -1).max(1)) > np.median(good_maps.reshape(4, -1).max(1))
    again = PatchCore((2, 3), coreset=0.5, projection=32, seed=0, max_bank=2000).fit(good, progress=False)
    np.testing.assert_allclose(again.predict(imgs[:2]), maps[:2], rtol=1e-4)  # same bank, same maps


def test_patchcore_map_is_aligned_with_the_image(bottle_fit64):
    """Maps are in image coordinates: row = y, column = x (a transposed or batch-mixed map fails)."""
    fit = bottle_fit64
    good = np.stack([fit.image(s) for s in fit.good])
    pc = PatchCore((2, 3), coreset=0.5, projection=32, seed=0, max_bank=2000).fit(good[:10], progress=False)
    clean = good[10:12]
    test, mask = zip(*[off_diagonal_defect(g) for g in clean], strict=True)
    maps = pc.predict(np.stack([clean[0], test[0], clean[1], test[1]]))
    for k in (1, 3):
        m, own, mirror = maps[k], mask[k // 2], mask[k // 2].T
        assert m[own].mean() > 1.5 * m[mirror].mean()  # lights up where the defect is, not at its transpose
        y, x = np.unravel_index(np.argmax(m), m.shape)
        assert 4 <= y < 24 and 30 <= x < 62  # the peak is on the patch (up to the stride-8 grid)
        assert m[own].mean() > 1.5 * maps[k - 1][own].mean()  # and it is this image's map, not a neighbour's


def test_patchcore_rejects_bad_settings():
    with pytest.raises(ConfigError, match="coreset"):
        PatchCore(coreset=0, weights=None)
    with pytest.raises(ConfigError, match="before fit"):
        PatchCore(weights=None).predict(np.zeros((1, 32, 32, 3), np.uint8))
