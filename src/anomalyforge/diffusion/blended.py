"""Blended latent diffusion sampling (Avrahami et al. 2023) and the final pixel composite.

At every step the sampler's proposal is kept inside the mask and replaced outside it by the good
image's latent noised to the same level:

    x_{t-1} = p(x_{t-1} | x_t, c) ⊙ m + q(y_{t-1} | y_0) ⊙ (1 − m)

with m the mask at latent resolution. After decoding, `composite` keeps the good image's exact
pixels outside a slightly dilated, feathered copy of the mask, so nothing outside the defect can
change (the VAE would otherwise alter the whole image). Every random draw comes from one
torch.Generator per sample, so a pair does not depend on its batch-mates.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import cv2
import numpy as np
import torch
from tqdm.auto import tqdm

from anomalyforge.diffusion.loading import LDM

StepHook = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor | None], None]  # x0_hat is None at the first step


def per_sample_randn(shape: Sequence[int], generators: Sequence[torch.Generator]) -> torch.Tensor:
    """Standard normal noise (B, ...) where sample i is drawn from generators[i] only (on CPU, so the
    numbers do not depend on the device)."""
    return torch.stack([torch.randn(tuple(shape[1:]), generator=g) for g in generators])


@torch.no_grad()
def blended_sample(ldm: LDM, cond: torch.Tensor, good_latents: torch.Tensor, mask_latent: torch.Tensor | None,
                   generators: Sequence[torch.Generator], steps: int = 50, sampler: str = "ddim",
                   uncond: torch.Tensor | None = None, guidance_scale: float = 1.0,
                   before_step: StepHook | None = None, progress: bool = False,
                   strength: float = 1.0, eta: float = 0.0,
                   mask_schedule: Callable[[int], torch.Tensor] | None = None) -> torch.Tensor:
    """Blended denoising from pure noise; returns the final latents (B, C, h, w), float32.

    strength < 1 starts instead from the good latents noised to that fraction of the schedule and
    runs only the last round(steps * strength) steps (SDEdit, Meng et al. 2022); with a mask of
    ones that gives variations of the good images. strength 0 returns the good latents unchanged.

    cond / uncond: (B, 77, dim) text conditioning (uncond only used when guidance_scale != 1).
    good_latents: the good images' scaled latents y_0. mask_latent: (B, 1, h, w) in [0, 1]; None
    samples freely (no blending: with strength 1 `good_latents` only gives the latent shape).
    before_step(i, t, x_t, x0_hat_prev) is called before each UNet call (the attention
    re-weighting reads x_t there; x0_hat_prev is the previous step's clean estimate, None at first).
    eta: DDIM's stochasticity (0 deterministic, 1 = DDPM-like variance, as AnomalyDiffusion's
    official sampler); its noise comes from the per-sample generators. mask_schedule(t): the
    blending mask to use at timestep t instead of the fixed `mask_latent` (AnomalyDiffusion dilates
    the mask by an amount that shrinks with t). With a mask, the starting noise is blended with the
    good latent noised to the first timestep by the same noise (no extra draws).
    """

    sched = ldm.make_scheduler(sampler)
    sched.set_timesteps(steps, device=ldm.device)
    y0 = good_latents.to(ldm.device).float()
    fixed = None if mask_latent is None else mask_latent.to(ldm.device).float()

    def mask_at(t) -> torch.Tensor | None:
        if mask_schedule is not None:
            return mask_schedule(int(t)).to(ldm.device).float()
        return fixed

    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be in [0, 1], got {strength}")
    timesteps = list(sched.timesteps)
    noise = per_sample_randn(y0.shape, generators).to(ldm.device)
    blending = fixed is not None or mask_schedule is not None
    m = mask_at(timesteps[0]) if blending else None
    if strength >= 1.0:
        x = noise * float(sched.init_noise_sigma)
        if m is not None:  # outside the mask the walk starts on the good latent, noised to t_0
            x = x * m + sched.add_noise(y0, noise, timesteps[0].reshape(1)) * (1 - m)
    else:
        timesteps = timesteps[len(timesteps) - int(round(steps * strength)):]
        if not timesteps:
            return y0
        m = mask_at(timesteps[0]) if blending else None
        x = sched.add_noise(y0, noise, timesteps[0].reshape(1))
    use_cfg = uncond is not None and guidance_scale != 1.0
    x0_hat: torch.Tensor | None = None
    for i, t in enumerate(tqdm(timesteps, desc="sample", disable=not progress, leave=False)):
        if before_step is not None:
            before_step(i, t, x, x0_hat)
        inp = sched.scale_model_input(x, t)
        if use_cfg:
            assert uncond is not None  # use_cfg checked it
            both = torch.cat([uncond, cond]).to(ldm.dtype)
            eps_u, eps_c = ldm.unet(torch.cat([inp, inp]).to(ldm.dtype), t,
                                    encoder_hidden_states=both).sample.float().chunk(2)
            eps = eps_u + guidance_scale * (eps_c - eps_u)
        else:
            eps = ldm.unet(inp.to(ldm.dtype), t, encoder_hidden_states=cond.to(ldm.dtype)).sample.float()
        x_prev, x0_hat = _step(sched, eps, t, x, generators, eta)
        if m is None:
            x = x_prev
            continue
        if i + 1 < len(timesteps):
            y_prev = sched.add_noise(y0, per_sample_randn(y0.shape, generators).to(ldm.device),
                                     timesteps[i + 1].reshape(1))
            m = mask_at(timesteps[i + 1])
        else:
            y_prev = y0
        assert m is not None
        x = x_prev * m + y_prev * (1 - m)
    return x


def _step(sched, eps: torch.Tensor, t, x: torch.Tensor, generators: Sequence[torch.Generator],
          eta: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """One scheduler step; returns (x_{t-1}, x̂_0). DDIM with `eta` (its variance noise, when eta > 0,
    drawn from the per-sample generators); DDPM draws its variance noise from the per-sample
    generators (diffusers' randn_tensor takes a list)."""
    from diffusers import DDPMScheduler  # lazy: diffusers is heavy to import

    if isinstance(sched, DDPMScheduler):
        res = sched.step(eps, t, x, generator=list(generators), return_dict=True)  # type: ignore[attr-defined]  # mypy sees diffusers' dummy class
    elif eta > 0:
        noise = per_sample_randn(x.shape, generators).to(x.device, x.dtype)
        res = sched.step(eps, t, x, eta=float(eta), variance_noise=noise, return_dict=True)
    else:
        res = sched.step(eps, t, x, eta=0.0, return_dict=True)
    return res.prev_sample.float(), res.pred_original_sample.float()


def feather_mask(mask: np.ndarray, dilate_px: int, feather_px: int) -> np.ndarray:
    """Soft alpha (H, W) float32 in [0, 1]: 1 on the mask dilated by `dilate_px`, fading to 0 over
    `feather_px` more pixels; exactly 0 beyond mask ⊕ (dilate_px + feather_px)."""
    m = (mask > 0).astype(np.uint8)
    def dil(r: int) -> np.ndarray:
        if r <= 0:
            return m.copy()
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        return cv2.dilate(m, k)
    core = dil(dilate_px).astype(np.float32)
    outer = dil(dilate_px + feather_px)
    if feather_px <= 0:
        return core
    dist = cv2.distanceTransform((1 - core).astype(np.uint8), cv2.DIST_L2, 5)
    alpha = np.clip(1.0 - dist / float(feather_px + 1), 0.0, 1.0).astype(np.float32)
    alpha[outer == 0] = 0.0
    return alpha


def composite(good: np.ndarray, generated: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """good·(1−α) + generated·α as uint8; pixels with α = 0 are copied from `good` bit-exactly."""
    a = alpha[..., None].astype(np.float32)
    mixed = np.rint(good.astype(np.float32) * (1 - a) + generated.astype(np.float32) * a)
    out = np.clip(mixed, 0, 255).astype(np.uint8)
    out[alpha == 0] = good[alpha == 0]
    return out


def to_model_images(images: Sequence[np.ndarray]) -> torch.Tensor:
    """uint8 (H, W, 3) RGB arrays -> (B, 3, H, W) float in [-1, 1]."""
    arr = np.stack([np.asarray(im, dtype=np.float32) for im in images]) / 127.5 - 1.0
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


def from_model_images(x: torch.Tensor) -> list[np.ndarray]:
    """(B, 3, H, W) in [-1, 1] -> uint8 (H, W, 3) arrays."""
    arr = ((x.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    return [np.ascontiguousarray(a) for a in arr]
