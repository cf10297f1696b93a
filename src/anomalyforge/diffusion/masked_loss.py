"""The masked diffusion loss and the small training loop shared by the diffusion generators.

`masked_diffusion_loss` is ||m ⊙ (ε − ε_θ(z_t, t, c))||² (AnomalyDiffusion eq. 4) as the official
code computes it: the pixel mask resized to the latent grid and thresholded at 0.5
(`loss_mask_to_latent`), the squared masked error averaged over *all* latent cells and channels
(so a small defect gives a small loss, as in the official code). The model is only taught what
happens inside the defect, so the learned embedding does not absorb the object's normal
appearance. With `mask=None` it is the plain textual-inversion loss.

`train_params` runs AdamW on a given parameter list only. The trainable parameters are float32
master weights; when the frozen model computes in bf16 or fp16 the loss runs under
`torch.autocast` and, for fp16, with a `GradScaler` (the pattern of diffusers' training
scripts), so gradients of ~1e-5 per output do not underflow fp16 and silently stop learning.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from anomalyforge.diffusion.loading import LDM


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """mean((m ⊙ (pred − target))²) over all cells and channels (official); plain MSE if mask is None."""
    err = (pred.float() - target.float()) ** 2
    if mask is None:
        return err.mean()
    return (err * mask.float().expand_as(err)).mean()


def loss_mask_to_latent(mask: torch.Tensor, latent_hw: tuple[int, int]) -> torch.Tensor:
    """(B, 1, H, W) {0, 1} pixel mask -> (B, 1, h, w) loss mask: bilinear resize (antialiased, like
    torchvision's Resize in the official code), then ≥ 0.5."""
    m = mask.float()
    if tuple(m.shape[-2:]) != tuple(latent_hw):
        m = F.interpolate(m, size=latent_hw, mode="bilinear", align_corners=False,
                          antialias=m.shape[-1] > latent_hw[-1])
    return (m >= 0.5).float()


def mask_to_latent(mask: torch.Tensor, latent_hw: tuple[int, int]) -> torch.Tensor:
    """(B, 1, H, W) {0, 1} pixel mask -> (B, 1, h, w) *blending* mask: a latent cell counts when any of
    its pixels is masked (max-pooling), so thin defects keep their cells when generated. (Ours: the
    official code resizes; a one-pixel scratch would then have no latent cell to be painted in.)"""
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
                 max_grad_norm: float | None = None, dtype: torch.dtype = torch.float32,
                 device: torch.device | str = "cpu") -> list[float]:
    """Minimise `loss_fn(step)` over `params` only (AdamW, constant lr, no weight decay unless
    given, gradient norm clipped to `max_grad_norm` when given); returns the loss curve.

    `dtype` is the frozen model's compute dtype on `device`: bf16 / fp16 run the loss under
    autocast; fp16 also scales the loss (GradScaler) and unscales before clipping. `params` must be
    float32 (master weights), so AdamW's updates never round away.
    """

    params = list(params)
    low = [p for p in params if p.dtype != torch.float32]
    if low:
        raise ValueError(f"train_params needs float32 master weights, got {low[0].dtype}")
    dev = torch.device(device)
    autocast = (torch.autocast(device_type=dev.type, dtype=dtype) if dtype in (torch.float16, torch.bfloat16)
                else nullcontext())
    scaler = torch.amp.GradScaler(dev.type, enabled=dtype == torch.float16)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    losses: list[float] = []
    bar = tqdm(range(steps), desc=desc, disable=not progress, leave=False)
    for step in bar:
        opt.zero_grad(set_to_none=True)
        with autocast:
            loss = loss_fn(step)
        scaler.scale(loss.float()).backward()
        if max_grad_norm is not None:
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
        scaler.step(opt)
        scaler.update()
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
    return losses
