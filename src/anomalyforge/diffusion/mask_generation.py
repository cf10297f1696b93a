"""Defect masks for the diffusion generators.

Two sources (AnomalyDiffusion's `mask_source`):

* "textual_inversion" (the paper): a mask embedding e_m (k' tokens) per defect type is learned by
  textual inversion on the few-shot masks, each mask encoded through the VAE as a 3-channel image.
  New masks are sampled from noise with classifier-free guidance (s = 5), averaged over channels,
  thresholded, and rejected when empty, too large, or touching the image border too much; after
  `tries` rejections the synthesis route below is used for that seed.
* "synthesis": a few-shot mask reshaped by the shared GAA-style `anomalyforge.masks.enhance_mask`
  and placed by `anomalyforge.masks.placement.place_mask` (random rotation, scale, flip, position).

Every draw comes from the seed's own generator, so a mask depends only on its seed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from anomalyforge.diffusion.blended import blended_sample, from_model_images
from anomalyforge.diffusion.loading import LDM
from anomalyforge.masks.enhance import enhance_mask
from anomalyforge.masks.placement import NoPlacement, place_mask


def mask_to_rgb(mask: np.ndarray) -> np.ndarray:
    """uint8 {0, 255} (H, W) mask -> (H, W, 3) image, the form the VAE encodes."""
    return np.repeat(np.where(mask > 0, 255, 0).astype(np.uint8)[..., None], 3, axis=2)


def rgb_to_mask(image: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Decoded (H, W, 3) uint8 mask image -> uint8 {0, 255}: channel mean ≥ threshold·255."""
    return np.where(image.astype(np.float32).mean(axis=2) >= threshold * 255.0, 255, 0).astype(np.uint8)


def border_fraction(mask: np.ndarray, band: int = 2) -> float:
    """Fraction of the image's outer `band`-pixel frame that the mask covers."""
    m = mask > 0
    frame = np.zeros_like(m)
    frame[:band], frame[-band:], frame[:, :band], frame[:, -band:] = True, True, True, True
    return float(m[frame].mean())


def acceptable(mask: np.ndarray, max_border: float, max_area: float, min_pixels: int = 4) -> bool:
    """A sampled mask is kept when non-trivial, not covering more than `max_area` of the image, and
    covering at most `max_border` of the image frame."""
    n = int((mask > 0).sum())
    return n >= min_pixels and n <= max_area * mask.size and border_fraction(mask) <= max_border


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
                 threshold: float = 0.5) -> list[np.ndarray]:
    """One mask per generator from the learned mask embedding (`cond`, (B, 77, dim)) with
    classifier-free guidance against `uncond`; returned thresholded at `size`×`size`."""
    b = len(generators)
    f = ldm.vae_scale_factor
    shape_lat = (b, ldm.latent_channels, size // f, size // f)
    zeros = torch.zeros(shape_lat)
    ones = torch.ones(b, 1, size // f, size // f)
    lat = blended_sample(ldm, cond, zeros, ones, generators, steps=steps, sampler=sampler,
                         uncond=uncond, guidance_scale=guidance)
    images = from_model_images(ldm.decode_latents(lat))
    return [rgb_to_mask(im, threshold) for im in images]

