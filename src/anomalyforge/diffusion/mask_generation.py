"""Defect masks for the diffusion generators.

Two sources (AnomalyDiffusion's `mask_source`):

* "textual_inversion" (the paper): a mask embedding e_m (k' tokens) per defect type is learned by
  textual inversion on the few-shot masks, each mask encoded through the VAE as a 3-channel image.
  New masks are sampled from noise with classifier-free guidance (s = 5), averaged over channels and
  thresholded as the official `generate_mask.py`: channel mean > 0.8 on the decoder's [−1, 1]
  scale (`threshold_mask`). A mask is rejected when any one of the four border lines has more than
  a third of its pixels in the mask (`border_ok`, official `check_mask`), and — ours, the official
  script keeps them — when it is empty (or larger than `max_area`, off by default); after `tries`
  rejections the synthesis route below is used for that seed and the pair records it (`mask_from`).
* "synthesis": a few-shot mask reshaped by the shared GAA-style `anomalyforge.masks.enhance_mask`
  and placed by `anomalyforge.masks.placement.place_mask` (random rotation, scale, flip, position).

Every draw comes from the seed's own generator, so a mask depends only on its seed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from anomalyforge.diffusion.blended import blended_sample
from anomalyforge.diffusion.loading import LDM
from anomalyforge.masks.enhance import enhance_mask
from anomalyforge.masks.placement import NoPlacement, place_mask


def mask_to_rgb(mask: np.ndarray) -> np.ndarray:
    """uint8 {0, 255} (H, W) mask -> (H, W, 3) image, the form the VAE encodes."""
    return np.repeat(np.where(mask > 0, 255, 0).astype(np.uint8)[..., None], 3, axis=2)


MASK_THRESHOLD = 0.8  # official: channel mean > 0.8 on [-1, 1]
BORDER_LINE_SHARE = 1 / 3  # official: reject when one border line has more than w/3 mask pixels


def threshold_mask(images: torch.Tensor, threshold: float = MASK_THRESHOLD) -> list[np.ndarray]:
    """Decoded mask images (B, 3, H, W) in [−1, 1] -> uint8 {0, 255} masks: channel mean > threshold."""
    on = images.detach().float().cpu().mean(dim=1) > threshold
    return [np.where(m.numpy(), 255, 0).astype(np.uint8) for m in on]


def rgb_to_mask(image: np.ndarray, threshold: float = MASK_THRESHOLD) -> np.ndarray:
    """A uint8 (H, W, 3) mask image -> uint8 {0, 255}: channel mean > threshold on the [−1, 1] scale
    (v / 127.5 − 1), the rule of `threshold_mask`."""
    return np.where(image.astype(np.float32).mean(axis=2) / 127.5 - 1.0 > threshold, 255, 0).astype(np.uint8)


def border_ok(mask: np.ndarray, share: float = BORDER_LINE_SHARE) -> bool:
    """False when the first or last row, or the first or last column, has more than `share` of its
    pixels in the mask (official `check_mask`, which uses the image width w for all four lines)."""
    m = mask > 0
    h, w = m.shape
    rows = max(int(m[0].sum()), int(m[-1].sum()))
    cols = max(int(m[:, 0].sum()), int(m[:, -1].sum()))
    return rows <= share * w and cols <= share * h


def acceptable(mask: np.ndarray, max_area: float = 1.0, min_pixels: int = 1,
               border_share: float = BORDER_LINE_SHARE) -> bool:
    """A sampled mask is kept when it passes `border_ok`, has at least `min_pixels` pixels and covers at
    most `max_area` of the image (1.0: no area rule, as the official code)."""
    n = int((mask > 0).sum())
    return n >= min_pixels and n <= max_area * mask.size and border_ok(mask, border_share)


def synthesize_mask(few_shot: Sequence[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """A new mask from the few-shot masks: pick one, reshape it (enhance_mask with area-adaptive
    scaling towards the type's mean area) and place it anywhere in the frame (rotation ±180°,
    scale 0.8–1.25, flips). Falls back to the enhanced mask in place if it cannot be placed."""

    masks = [np.where(m > 0, 255, 0).astype(np.uint8) for m in few_shot]
    mean_area = float(np.mean([(m > 0).sum() for m in masks]))
    src = masks[int(rng.integers(len(masks)))]
    new = enhance_mask(src, rng, mean_area=mean_area)
    if not new.any():
        new = src
    frame = np.ones_like(new, dtype=np.uint8)
    try:
        placed, _, _ = place_mask(new, frame, rng, "inside", rotation=180.0, scale=(0.8, 1.25), flip=True)
        if placed.any():
            return placed
    except NoPlacement:
        pass
    return new


@torch.no_grad()
def sample_masks(ldm: LDM, cond: torch.Tensor, uncond: torch.Tensor, generators: Sequence[torch.Generator],
                 size: int, steps: int, guidance: float = 5.0, sampler: str = "ddim",
                 threshold: float = MASK_THRESHOLD, eta: float = 0.0) -> list[np.ndarray]:
    """One mask per generator from the learned mask embedding (`cond`, (B, 77, dim)) with
    classifier-free guidance against `uncond`; returned thresholded (`threshold_mask`) at
    `size`×`size`. Official: DDIM 100 steps, η = 1, guidance 5."""
    b = len(generators)
    f = ldm.vae_scale_factor
    shape_lat = (b, ldm.latent_channels, size // f, size // f)
    zeros = torch.zeros(shape_lat)
    ones = torch.ones(b, 1, size // f, size // f)
    lat = blended_sample(ldm, cond, zeros, ones, generators, steps=steps, sampler=sampler,
                         uncond=uncond, guidance_scale=guidance, eta=eta)
    return threshold_mask(ldm.decode_latents(lat), threshold)

