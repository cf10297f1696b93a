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

import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from anomalyforge.diffusion.autoencoder import (
    LATENT_SAMPLES,
    AutoencoderFit,
    fit_autoencoder,
    load_autoencoder,
    resize_images,
    sample_latent,
)
from anomalyforge.diffusion.blended import blended_sample, from_model_images, to_model_images
from anomalyforge.diffusion.clip import load_clip, refine_latent
from anomalyforge.diffusion.loading import load_ldm, pick_diffusion_device
from anomalyforge.diffusion.textual_inversion import tokenize
from anomalyforge.errors import ConfigError
from anomalyforge.seeds import numpy_rng, torch_generator
from anomalyforge.synth.keywords import candidate_keywords, choose_prompt, load_wordnet, prompts_for


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


# ---- torchvision augmentation arms (TVG Tables 17-18) -------------------------------------------
TORCHVISION_ARMS = ("strategy1", "strategy2", "autoaugment", "randaugment")


def torchvision_transform(arm: str, size: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """torchvision's own transform of `arm` for (3, size, size) uint8 tensors:
    strategy1 RandomCrop (same side, reflect padding of 1/16) + ColorJitter(0.2, 0.2, 0.2);
    strategy2 RandomRotation(10 degrees) + RandomAutocontrast(p 0.5); autoaugment AutoAugment
    (ImageNet policy); randaugment RandAugment (2 ops, magnitude 9)."""
    from torchvision import transforms as T  # lazy: torchvision is heavy to import

    arms: dict[str, Callable[[], Callable[[torch.Tensor], torch.Tensor]]] = {
        "strategy1": lambda: T.Compose([T.RandomCrop(size, padding=max(1, size // 16), padding_mode="reflect"),
                                        T.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2)]),
        "strategy2": lambda: T.Compose([T.RandomRotation(10), T.RandomAutocontrast(p=0.5)]),
        "autoaugment": lambda: T.AutoAugment(T.AutoAugmentPolicy.IMAGENET),
        "randaugment": lambda: T.RandAugment(num_ops=2, magnitude=9),
    }
    if arm not in arms:
        raise ConfigError(f"unknown augmentation arm {arm!r}; choose one of: {', '.join(TORCHVISION_ARMS)}")
    return arms[arm]()


@dataclass(frozen=True)
class TorchvisionGoodConfig:
    """Generated goods from one of TVG's augmentation arms (torchvision transforms)."""

    arm: str

    def __post_init__(self) -> None:
        if self.arm not in TORCHVISION_ARMS:
            raise ConfigError(f"unknown augmentation arm {self.arm!r}; choose one of: {', '.join(TORCHVISION_ARMS)}")

    def to_dict(self) -> dict:
        return {"generator": self.arm}


def torchvision_goods(images: np.ndarray, n: int, seed: int, config: TorchvisionGoodConfig) -> np.ndarray:
    """`n` goods (n, H, W, 3) uint8 from the K `images`: variant i is image i mod K through the arm's
    transform with torch's global generator seeded from stream (seed, i) inside `fork_rng` (the
    caller's random state is left as it was)."""
    images = _check_goods(images, n, "torchvision_goods")
    tf = torchvision_transform(config.arm, int(images.shape[1]))
    out = np.empty((n, *images.shape[1:]), np.uint8)
    for i in range(n):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(torch_generator(seed, i).initial_seed())
            x = torch.from_numpy(np.ascontiguousarray(images[i % len(images)])).permute(2, 0, 1)
            out[i] = tf(x).permute(1, 2, 0).numpy()
    return out


def _check_goods(images: np.ndarray, n: int, who: str) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or len(images) == 0 or images.dtype != np.uint8:
        raise ConfigError(f"{who} needs (K>0, H, W, 3) uint8 images, got shape {images.shape} {images.dtype}")
    if n < 0:
        raise ConfigError(f"number of generated good images must be >= 0, got {n}")
    return images


# ---- TVG's variance-aware generator, keyword-to-prompt and CLIP guidance -------------------------
VAE_ARMS = ("vae", "tvg")


@dataclass(frozen=True)
class VaeGoodConfig:
    """TVG's generated goods. `arm` "vae": the variance-aware generator alone (encode, latent
    mu + temperature * sigma * eps, decode); "tvg": then the keyword-to-prompt generator and
    `guide_steps` of CLIP-guided latent refinement toward "a {class} with {keyword}".

    `vae`: a diffusers AutoencoderKL / VQModel (folder or hub id); None fits a small VAE on the K
    good images of each draw at `fit.size` (the offline path): its variation,
    decode(latent) - decode(mu), upsampled, is added to the original image. `clip`: a CLIPModel (folder or hub id);
    None skips the keyword scoring and the guidance. `prompt` fixes the prompt (no keyword search)."""

    arm: str = "vae"
    vae: str | None = None
    latent: str = "mu+sigma*eps"
    temperature: float = 1.0
    fit: AutoencoderFit = field(default_factory=AutoencoderFit)
    clip: str | None = None
    keywords: int = 1000
    prompt: str | None = None
    guide_steps: int = 25
    guide_lr: float = 0.05
    anchor: float = 1.0
    batch_size: int = 4
    device: str | None = None

    def __post_init__(self) -> None:
        if self.arm not in VAE_ARMS:
            raise ConfigError(f"unknown TVG arm {self.arm!r}; choose one of: {', '.join(VAE_ARMS)}")
        if self.latent not in LATENT_SAMPLES:
            raise ConfigError(f"unknown latent sample {self.latent!r}; choose one of: {', '.join(LATENT_SAMPLES)}")
        if self.temperature < 0 or self.keywords < 0 or self.guide_steps < 0 or self.batch_size < 1:
            raise ConfigError("TVG goods: temperature, keywords, guide_steps must be >= 0 and batch_size >= 1")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["generator"] = d.pop("arm")
        d["fit"] = self.fit.to_dict()
        return d


class VaeGoods:
    """The loaded TVG generator for one category: pretrained autoencoder / CLIP / WordNet loaded
    once, then `generate` per K-shot draw. Says in one line (stderr) which parts run without weights."""

    def __init__(self, config: VaeGoodConfig, category: str) -> None:
        self.config, self.category = config, category
        dev = pick_diffusion_device(config.device)
        self.device = dev
        self.autoencoder = load_autoencoder(config.vae, dev) if config.vae else None
        guided = config.arm == "tvg"
        self.clip = load_clip(config.clip, dev) if guided and config.clip else None
        self.wordnet = load_wordnet() if self.clip is not None and config.prompt is None else None
        self.prompts: dict[int, str] = {}  # seed -> the prompt chosen for that draw
        skipped = []
        if self.autoencoder is None:
            skipped.append("no --vae: a small VAE is fitted on the K good images of each draw "
                           "(not TVG's ImageNet VQGAN)")
        if guided and self.clip is None:
            skipped.append("no --clip: keyword-to-prompt and CLIP guidance skipped (variance-aware VAE only)")
        if skipped:
            print(f"note: {config.arm} goods: {'; '.join(skipped)}", file=sys.stderr)

    def choose_prompt(self, x: torch.Tensor) -> str:
        """The draw's prompt: the fixed one, else the WordNet candidate closest to the images (CLIP)."""
        assert self.clip is not None
        if self.config.prompt is not None:
            return self.config.prompt
        words = candidate_keywords(self.category, self.config.keywords, self.wordnet)
        return choose_prompt(x, prompts_for(self.category, words), self.clip)[0]

    def generate(self, images: np.ndarray, n: int, seed: int = 0, progress: bool = False) -> np.ndarray:
        """`n` goods (n, H, W, 3) uint8 from the K good `images`: variant i from image i mod K with
        its own noise (seed, i), so it does not depend on n."""
        cfg = self.config
        images = _check_goods(images, n, "vae goods")
        ae = self.autoencoder or fit_autoencoder(images, seed, cfg.fit, self.device)
        small = ae.size is not None and images.shape[1:3] != (ae.size, ae.size)
        src = resize_images(images, ae.size) if small and ae.size else images
        if src.shape[1] % ae.factor or src.shape[2] % ae.factor:
            raise ConfigError(f"image size {images.shape[1]}x{images.shape[2]} is not a multiple of the "
                              f"autoencoder's factor {ae.factor}")
        text = None
        if self.clip is not None and n:
            prompt = self.choose_prompt(to_model_images(list(images)))
            self.prompts[seed] = prompt
            text = self.clip.text_embeddings([prompt])[0]
        out = np.empty((n, *images.shape[1:]), np.uint8)
        for start in tqdm(range(0, n, cfg.batch_size), desc=f"{cfg.arm} goods", disable=not progress):
            idx = list(range(start, min(n, start + cfg.batch_size)))
            with torch.no_grad():
                mu, sigma = ae.stats(to_model_images([src[i % len(src)] for i in idx]))
                z = torch.cat([sample_latent(mu[j:j + 1], sigma[j:j + 1], cfg.latent, cfg.temperature,
                                             torch_generator(seed, i)) for j, i in enumerate(idx)])
            if text is not None and self.clip is not None and cfg.guide_steps:
                z = refine_latent(z, ae.decode, self.clip, text, cfg.guide_steps, cfg.guide_lr, cfg.anchor)
            with torch.no_grad():
                if small:  # the small VAE's variation, upsampled, on the original image
                    delta = F.interpolate(ae.decode(z) - ae.decode(mu), size=images.shape[1:3], mode="bilinear",
                                          align_corners=False)
                    full = to_model_images([images[i % len(images)] for i in idx])
                    out[idx] = np.stack(from_model_images((full + delta.cpu()).clamp(-1, 1)))
                else:
                    out[idx] = np.stack(from_model_images(ae.decode(z)))
        return out


GoodsConfig = VaeGoodConfig | TorchvisionGoodConfig


def goods_generator(config: GoodsConfig, category: str) -> Callable[[np.ndarray, int, int], np.ndarray]:
    """A function (images, n, seed) -> n generated goods for `config`, with its models loaded once."""
    if isinstance(config, TorchvisionGoodConfig):
        return lambda images, n, seed: torchvision_goods(images, n, seed, config)
    gen = VaeGoods(config, category)
    return lambda images, n, seed: gen.generate(images, n, seed)
