"""Blended sampling keeps the good latent outside the mask; the composite keeps its exact pixels."""

from __future__ import annotations

import numpy as np
import torch

from anomalyforge.diffusion.blended import blended_sample, composite, feather_mask


def test_feathered_composite_keeps_pixels_outside_dilated_mask():
    rng = np.random.default_rng(0)
    good = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    gen = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    mask = np.zeros((40, 40), np.uint8)
    mask[15:22, 10:18] = 255
    alpha = feather_mask(mask, dilate_px=2, feather_px=3)
    assert alpha[mask > 0].min() == 1.0 and 0 < alpha.max() <= 1
    out = composite(good, gen, alpha)
    outer = feather_mask(mask, dilate_px=5, feather_px=0) > 0  # mask dilated by 2 + 3
    assert np.array_equal(out[~outer], good[~outer])
    assert np.array_equal(out[mask > 0], gen[mask > 0])
    ring = (alpha > 0) & (alpha < 1)
    assert ring.any()  # a soft transition exists between the two


def test_blended_sampling_outside_mask_and_per_seed(ldm):
    g = torch.Generator().manual_seed(0)
    y0 = torch.randn(2, 4, 8, 8, generator=g)
    m = torch.zeros(2, 1, 8, 8)
    m[:, :, 2:5, 3:7] = 1
    cond = torch.randn(2, 77, ldm.text_dim, generator=g)
    gens = lambda seeds: [torch.Generator().manual_seed(s) for s in seeds]  # noqa: E731
    for sampler in ("ddim", "ddpm"):
        out = blended_sample(ldm, cond, y0, m, gens([5, 6]), steps=3, sampler=sampler)
        outside = (m == 0).expand_as(out)
        assert torch.equal(out[outside], y0[outside])
        assert not torch.allclose(out[~outside], y0[~outside])
        again = blended_sample(ldm, cond, y0, m, gens([5, 6]), steps=3, sampler=sampler)
        assert torch.equal(out, again)
        # a pair does not depend on its batch-mate's seed
        other = blended_sample(ldm, cond, y0, m, gens([5, 7]), steps=3, sampler=sampler)
        assert torch.allclose(other[0], out[0], atol=1e-5) and not torch.allclose(other[1], out[1])
