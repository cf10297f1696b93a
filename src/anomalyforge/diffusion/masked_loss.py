"""The masked diffusion loss and the small training loop shared by the diffusion generators.

`masked_diffusion_loss` is ||m ⊙ (ε − ε_θ(z_t, t, c))||² averaged over the masked latent cells
(AnomalyDiffusion eq. 4): the model is only taught what happens inside the defect, so the learned
embedding does not absorb the object's normal appearance. With `mask=None` it is the plain
textual-inversion loss. `train_params` runs AdamW on a given parameter list only, with a seeded
torch.Generator for timesteps and noise, and a tqdm bar on stderr.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from anomalyforge.diffusion.loading import LDM


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of (pred − target)² over the cells where `mask` (B, 1, h, w) is > 0 (all cells if None)."""
    err = (pred.float() - target.float()) ** 2
    if mask is None:
        return err.mean()
    m = mask.float().expand_as(err)
    return (err * m).sum() / m.sum().clamp_min(1.0)


def mask_to_latent(mask: torch.Tensor, latent_hw: tuple[int, int]) -> torch.Tensor:
    """(B, 1, H, W) {0, 1} pixel mask -> (B, 1, h, w) latent mask: a latent cell counts when any of its
    pixels is masked (max-pooling), so thin defects keep their cells."""
    return F.adaptive_max_pool2d(mask.float(), latent_hw)


def masked_diffusion_loss(ldm: LDM, scheduler, latents: torch.Tensor, cond: torch.Tensor,
                          mask_latent: torch.Tensor | None, generator: torch.Generator,
                          timesteps: torch.Tensor | None = None) -> torch.Tensor:
    """One noising + denoising pass: sample t and ε (seeded), predict, return the masked loss.

    `timesteps` (B,) fixes t per row instead of drawing it (DualAnoDiff: both branches of a pair
    share one t). Handles ε- and v-prediction checkpoints (SD 2.x 768 uses v).
    """
    b = latents.shape[0]
    noise = torch.randn(latents.shape, generator=generator).to(ldm.device)
    if timesteps is None:
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (b,), generator=generator)
    t = timesteps.to(ldm.device)
    latents = latents.to(ldm.device)
    noisy = scheduler.add_noise(latents, noise, t)
    pred = ldm.unet(noisy.to(ldm.dtype), t, encoder_hidden_states=cond.to(ldm.dtype)).sample
    v_pred = scheduler.config.prediction_type == "v_prediction"
    target = scheduler.get_velocity(latents, noise, t) if v_pred else noise
    m = None if mask_latent is None else mask_latent.to(ldm.device)
    return masked_mse(pred, target, m)


def train_params(params: Sequence[torch.nn.Parameter], loss_fn: Callable[[int], torch.Tensor], steps: int,
                 lr: float, desc: str = "fit", progress: bool = True, weight_decay: float = 0.0,
                 max_grad_norm: float | None = None) -> list[float]:
    """Minimise `loss_fn(step)` over `params` only (AdamW, constant lr, no weight decay unless
    given, gradient norm clipped to `max_grad_norm` when given); returns the loss curve."""

    params = list(params)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    losses: list[float] = []
    bar = tqdm(range(steps), desc=desc, disable=not progress, leave=False)
    for step in bar:
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(step)
        loss.backward()
        if max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
        opt.step()
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
    return losses
