"""Generated good images for few-shot unsupervised detection (PatchCore and kin).

With only K good images, a memory-bank detector has seen one pose, one lighting and one texture
phase per image, so ordinary variation reads as anomalous. `augment_goods` generates seeded
variants of the K images with the nuisance changes a production line has: a small rigid
misalignment (rotation, shift, scale), slight brightness / contrast drift, and optionally flips
for parts that are symmetric. The defaults are conservative so they hold for any object or
texture; flips are off because the orientation of many parts is itself a property to inspect.
Variant i comes from good image i mod K with its own seed, so the first K*m variants do not
depend on how many more are asked for.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np
import torch
from tqdm.auto import tqdm

from anomalyforge.diffusion.blended import blended_sample, from_model_images, to_model_images
from anomalyforge.diffusion.loading import load_ldm
from anomalyforge.diffusion.textual_inversion import tokenize
from anomalyforge.errors import ConfigError
from anomalyforge.seeds import numpy_rng, torch_generator


@dataclass(frozen=True)
class GoodAugmentConfig:
    """Ranges of the random nuisance changes (uniform draws)."""

    rotation: float = 5.0  # degrees, +-
    translate: float = 0.03  # fraction of the image side, +- per axis
    scale: tuple[float, float] = (0.97, 1.03)
    brightness: float = 0.05  # +- fraction of 255 added
    contrast: float = 0.05  # +- fraction, multiplicative around the image mean
    flip: bool = False  # random horizontal / vertical flips (symmetric parts only)

    def __post_init__(self) -> None:
        if not (0 <= self.rotation <= 180 and 0 <= self.translate < 0.5 and 0 <= self.brightness < 1
                and 0 <= self.contrast < 1):
            raise ConfigError(f"good augmentation ranges out of bounds: {self}")
        lo, hi = self.scale
        if not 0 < lo <= hi:
            raise ConfigError(f"good augmentation scale must be 0 < lo <= hi, got {self.scale}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["scale"] = list(self.scale)
        return d


def augment_good(image: np.ndarray, rng: np.random.Generator, cfg: GoodAugmentConfig) -> np.ndarray:
    """One variant of an (H, W, 3) uint8 good image; borders are filled by reflection."""
    h, w = image.shape[:2]
    angle = rng.uniform(-cfg.rotation, cfg.rotation)
    scale = rng.uniform(*cfg.scale)
    tx, ty = rng.uniform(-cfg.translate, cfg.translate, size=2) * (w, h)
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
    m[:, 2] += (tx, ty)
    out = cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    if cfg.flip:
        if rng.random() < 0.5:
            out = out[:, ::-1]
        if rng.random() < 0.5:
            out = out[::-1]
    gain = 1 + rng.uniform(-cfg.contrast, cfg.contrast)
    shift = 255 * rng.uniform(-cfg.brightness, cfg.brightness)
    f = out.astype(np.float32)
    f = (f - f.mean()) * gain + f.mean() + shift
    return np.clip(np.rint(f), 0, 255).astype(np.uint8)


def augment_goods(images: np.ndarray, n: int, seed: int = 0,
                  config: GoodAugmentConfig | None = None) -> np.ndarray:
    """`n` generated good images (n, H, W, 3) uint8 from the K good `images` (K, H, W, 3):
    variant i is made from image i mod K with seed (seed, i)."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or len(images) == 0:
        raise ConfigError(f"augment_goods needs (K>0, H, W, 3) images, got shape {images.shape}")
    if n < 0:
        raise ConfigError(f"number of generated good images must be >= 0, got {n}")
    cfg = config or GoodAugmentConfig()
    out = np.empty((n, *images.shape[1:]), np.uint8)
    for i in range(n):
        rng = numpy_rng(seed, i)
        out[i] = augment_good(images[i % len(images)], rng, cfg)
    return out


@dataclass(frozen=True)
class DiffusionGoodConfig:
    """SDEdit variations of good images with a latent diffusion model (`--base-model`): each good
    image is encoded, noised to `strength` of the schedule and denoised with `prompt`, so the
    variation keeps the part's layout and changes its fine appearance (texture, lighting, small
    geometry). Higher strength: more change, less faithfulness."""

    base_model: str
    strength: float = 0.3
    steps: int = 50  # full-schedule DDIM steps; round(steps * strength) of them run
    prompt: str = ""
    batch_size: int = 4
    device: str | None = None
    precision: str = "auto"

    def __post_init__(self) -> None:
        if not 0 < self.strength <= 1:
            raise ConfigError(f"diffusion good variations: strength must be in (0, 1], got {self.strength}")
        if self.steps < 1 or self.batch_size < 1:
            raise ConfigError("diffusion good variations: steps and batch_size must be >= 1")

    def to_dict(self) -> dict:
        return asdict(self)


def diffuse_goods(images: np.ndarray, n: int, seed: int = 0, config: DiffusionGoodConfig | None = None,
                  progress: bool = False, ldm=None) -> np.ndarray:
    """`n` diffusion-generated good images (n, H, W, 3) uint8 from the K good `images`: variant i is
    an SDEdit variation of image i mod K, drawn from its own generator seeded (seed, i), so it does
    not depend on n or the batch. H and W must be multiples of the VAE's factor (8 for SD).
    `ldm`: the already loaded `config.base_model` (`anomalyforge.diffusion.loading.load_ldm`), to
    load it once for many calls."""


    if config is None:
        raise ConfigError("diffusion good variations need a base model (DiffusionGoodConfig(base_model=...))")
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or len(images) == 0:
        raise ConfigError(f"diffuse_goods needs (K>0, H, W, 3) images, got shape {images.shape}")
    if n < 0:
        raise ConfigError(f"number of generated good images must be >= 0, got {n}")
    ldm = ldm or load_ldm(config.base_model, config.device, config.precision)
    f = ldm.vae_scale_factor
    if images.shape[1] % f or images.shape[2] % f:
        raise ConfigError(f"image size {images.shape[1]}x{images.shape[2]} is not a multiple of {f}")
    out = np.empty((n, *images.shape[1:]), np.uint8)
    with torch.no_grad():
        cond1 = ldm.text_encoder(tokenize(ldm.tokenizer, [config.prompt], ldm.device))[0]
        for start in tqdm(range(0, n, config.batch_size), desc="diffusion goods", disable=not progress):
            idx = list(range(start, min(n, start + config.batch_size)))
            src = [images[i % len(images)] for i in idx]
            gens = [torch_generator(seed, i)
                    for i in idx]
            y0 = ldm.encode_images(to_model_images(src))
            ones = torch.ones(len(idx), 1, *y0.shape[-2:])
            lat = blended_sample(ldm, cond1.expand(len(idx), -1, -1), y0, ones, gens, steps=config.steps,
                                 strength=config.strength)
            out[idx] = np.stack(from_model_images(ldm.decode_latents(lat)))
    return out
