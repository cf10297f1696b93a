"""The masked diffusion loss ignores everything outside the mask."""

from __future__ import annotations

import torch

from anomalyforge.diffusion.masked_loss import mask_to_latent, masked_mse


def test_loss_ignores_target_outside_mask():
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
    mask = torch.zeros(2, 1, 8, 8)
    mask[:, :, 2:5, 3:6] = 1
    base = masked_mse(pred, target, mask)
    perturbed = target + 100.0 * (1 - mask) * torch.randn(2, 4, 8, 8, generator=g)
    assert torch.equal(masked_mse(pred, perturbed, mask), base)
    inside = target + (mask * 0.5)
    assert not torch.allclose(masked_mse(pred, inside, mask), base)
    # gradients reach only masked cells
    p = pred.clone().requires_grad_(True)
    masked_mse(p, target, mask).backward()
    assert torch.all(p.grad[(mask == 0).expand_as(p)] == 0) and p.grad[(mask == 1).expand_as(p)].abs().sum() > 0
    # the plain loss is the mean over all cells
    assert torch.allclose(masked_mse(pred, target, None), ((pred - target) ** 2).mean())


def test_latent_mask_keeps_thin_defects():
    m = torch.zeros(1, 1, 32, 32)
    m[0, 0, :, 13] = 1  # a one-pixel line
    lat = mask_to_latent(m, (8, 8))
    assert lat[0, 0, :, 3].eq(1).all() and lat.sum() == 8
