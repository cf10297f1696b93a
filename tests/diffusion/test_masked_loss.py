"""The masked diffusion loss ignores everything outside the mask."""

from __future__ import annotations

import torch

from anomalyforge.diffusion.masked_loss import loss_mask_to_latent, mask_to_latent, masked_mse


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


def test_official_loss_mask_and_normalisation():
    # loss mask: bilinear resize to the latent grid, then >= 0.5 (a 1-px line in 4x4 cells is 1/4 -> gone,
    # a 2x2-cell block survives)
    m = torch.zeros(1, 1, 16, 16)
    m[0, 0, :, 1] = 1  # one-pixel column: a quarter of each latent cell of column 0
    m[0, 0, 8:16, 8:16] = 1  # latent cells (2..3, 2..3) fully covered
    lat = loss_mask_to_latent(m, (4, 4))
    expected = torch.zeros(1, 1, 4, 4)
    expected[0, 0, 2:4, 2:4] = 1
    assert torch.equal(lat, expected)
    # mean over ALL cells and channels: error 2 on 4 of 16 cells, 2 channels -> (4 * 2 * 4) / (16 * 2) = 1
    pred = torch.zeros(1, 2, 4, 4)
    target = torch.full((1, 2, 4, 4), 2.0)
    assert torch.allclose(masked_mse(pred, target, lat), torch.tensor(1.0))


def test_fit_in_the_chosen_precision_lowers_the_loss(tiny_model):
    # fp32 master weights + autocast in the model's dtype: a few AdamW steps on a conditioning vector
    # lower a fixed-noise, fixed-t diffusion loss in fp32 and in bf16 (CPU)
    from anomalyforge.diffusion.loading import load_ldm
    from anomalyforge.diffusion.masked_loss import masked_diffusion_loss, train_params

    for precision in ("fp32", "bf16"):
        ldm = load_ldm(tiny_model, device="cpu", precision=precision)
        sched = ldm.make_scheduler("ddpm")
        g = torch.Generator().manual_seed(0)
        lat = torch.randn(2, 4, 8, 8, generator=g)
        mask = torch.zeros(2, 1, 8, 8)
        mask[:, :, 2:6, 2:6] = 1
        cond = torch.nn.Parameter(torch.randn(1, 77, ldm.text_dim, generator=g))

        def loss_fn(step: int, cond=cond, ldm=ldm, sched=sched, lat=lat, mask=mask) -> torch.Tensor:
            gen = torch.Generator().manual_seed(1)  # the same noise and t every step
            return masked_diffusion_loss(ldm, sched, lat, cond.expand(2, -1, -1), mask, gen,
                                         timesteps=torch.tensor([500, 700]))

        losses = train_params([cond], loss_fn, 15, 5e-2, progress=False, dtype=ldm.dtype, device=ldm.device)
        assert losses[-1] < 0.97 * losses[0], (precision, losses)
        assert cond.dtype == torch.float32
