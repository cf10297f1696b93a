"""Image autoencoders for variance-aware good-image generation (TVG): load, fit, encode, sample, decode.

TVG's variance-aware generator encodes a good image, samples its latent as mu + sigma * eps and
decodes it, so the decoded image keeps the part and varies where the encoder is unsure. Any
diffusers `AutoencoderKL` (the Stable Diffusion VAE) or `VQModel` (a VQGAN, TVG's ImageNet
initialisation) works, by hub id or local folder (`load_autoencoder`):

- `AutoencoderKL`: mu and sigma are the posterior's mean and standard deviation.
- `VQModel`: the encoder is deterministic, so sigma is defined from the pre-quantisation latent h
  as its local standard deviation per channel over a 3x3 neighbourhood
  (sqrt(E[h^2] - E[h]^2), reflect padding): large on edges and texture, where a small shift of
  the code is a plausible variation, near zero on flat areas. The sampled latent goes through the
  codebook when decoded, so the image is made of the model's own codes.

No pretrained autoencoder ships with anomalyforge and none can be downloaded offline, so
`fit_autoencoder` trains a small `AutoencoderKL` on the given good images at a small size
(reconstruction + a weak KL term, seeded): the explicit offline path, labelled "offline-fitted"
wherever it is used.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from anomalyforge.errors import ConfigError
from anomalyforge.seeds import Stream, torch_generator

KINDS = {"AutoencoderKL": "kl", "VQModel": "vq"}
LATENT_SAMPLES = ("mu", "mu+sigma", "mu+sigma*eps")  # TVG's ablation: mu alone, mu + sigma, mu + sigma * eps
SUBFOLDERS = ("vae", "vqvae")  # where a pipeline folder keeps its autoencoder (SD / LDM layout)
AUTOENCODER_HINT = ("pass a diffusers AutoencoderKL or VQModel folder or hub id (e.g. stabilityai/sd-vae-ft-mse "
                    "after `huggingface-cli download stabilityai/sd-vae-ft-mse --local-dir models/vae`), a "
                    "pipeline folder with vae/ or vqvae/, or none to fit a small VAE on the good images")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")


def resolve_pretrained(name: str | Path, what: str, hint: str, patterns: list[str],
                       ignore: list[str] | None = None) -> Path:
    """The local folder of `name`: an existing folder, or a hub id from the local Hugging Face cache
    (or the hub when online and HF_HUB_OFFLINE is unset). Anything else: one ConfigError line."""
    text = str(name)
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ConfigError(f"{path}: {what} must be a folder, not a file; {hint}")
        return path
    if _HUB_ID.match(text) is None:
        raise ConfigError(f"{path}: {what} folder not found; {hint}")
    from huggingface_hub import snapshot_download  # lazy: huggingface_hub is heavy to import

    try:
        return Path(snapshot_download(text, allow_patterns=patterns, ignore_patterns=ignore, local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached: try the hub unless offline
        if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
            raise ConfigError(f"{what} {text!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE "
                              f"is set; {hint}") from None
    try:
        return Path(snapshot_download(text, allow_patterns=patterns, ignore_patterns=ignore))
    except Exception as exc:  # noqa: BLE001 - network, auth, missing repo: all need the same action
        raise ConfigError(f"{what} {text!r} could not be fetched ({exc.__class__.__name__}); {hint}") from None


@dataclass
class Autoencoder:
    """A frozen-or-fitted image autoencoder and how its latent's mean and spread are read."""

    model: Any  # diffusers AutoencoderKL or VQModel
    kind: str  # "kl" or "vq"
    source: str  # hub id, folder, or "offline-fitted"
    device: torch.device
    size: int | None = None  # the one image side it runs at (the offline fit), None: any multiple of factor

    @property
    def factor(self) -> int:
        """Pixels per latent cell."""
        return int(2 ** (len(self.model.config.block_out_channels) - 1))

    def stats(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, H, W) in [-1, 1] -> latent mean mu and spread sigma, each (B, C, H/f, W/f)."""
        x = images.to(self.device, torch.float32)
        if self.kind == "kl":
            dist = self.model.encode(x).latent_dist
            return dist.mean, dist.std
        h = self.model.encode(x).latents
        mean = F.avg_pool2d(F.pad(h, (1, 1, 1, 1), mode="reflect"), 3, stride=1)
        sq = F.avg_pool2d(F.pad(h * h, (1, 1, 1, 1), mode="reflect"), 3, stride=1)
        return h, (sq - mean * mean).clamp_min(0).sqrt()

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents -> images (B, 3, H, W) in [-1, 1]; a VQModel quantises first (straight-through,
        so gradients reach the latent)."""
        return self.model.decode(latents.to(self.device, torch.float32)).sample.float().clamp(-1, 1)


def sample_latent(mu: torch.Tensor, sigma: torch.Tensor, mode: str, temperature: float,
                  generator: torch.Generator | None) -> torch.Tensor:
    """TVG's latent: "mu", "mu+sigma" (one temperature-scaled sigma up) or "mu+sigma*eps"
    (eps ~ N(0, 1) from `generator`, on CPU so it is the same on every device)."""
    if mode == "mu":
        return mu
    if mode == "mu+sigma":
        return mu + temperature * sigma
    if mode == "mu+sigma*eps":
        eps = torch.randn(mu.shape, generator=generator, dtype=torch.float32).to(mu.device)
        return mu + temperature * sigma * eps
    raise ConfigError(f"unknown latent sample {mode!r}; choose one of: {', '.join(LATENT_SAMPLES)}")


def _autoencoder_folder(folder: Path) -> tuple[Path, str]:
    """(folder holding config.json, class name) of a standalone or pipeline autoencoder folder."""
    for sub in ("", *SUBFOLDERS):
        cfg = folder / sub / "config.json"
        if cfg.is_file():
            try:
                cls = json.loads(cfg.read_text(encoding="utf-8")).get("_class_name", "?")
            except (OSError, json.JSONDecodeError) as exc:
                raise ConfigError(f"{cfg}: unreadable config.json ({exc})") from None
            if cls in KINDS:
                return folder / sub, cls
            if sub == "":
                continue  # e.g. a UNet folder: look for vae/ or vqvae/ below
    raise ConfigError(f"{folder}: no diffusers AutoencoderKL or VQModel found (config.json here, in vae/ "
                      f"or in vqvae/); {AUTOENCODER_HINT}")


def load_autoencoder(source: str | Path, device: str | torch.device = "cpu") -> Autoencoder:
    """Load a diffusers AutoencoderKL or VQModel (folder or hub id; a pipeline's vae/ or vqvae/ too),
    frozen, in eval mode, fp32."""
    patterns = ["config.json", "*.safetensors", "model_index.json", "vae/*", "vqvae/*"]
    root = resolve_pretrained(source, "autoencoder", AUTOENCODER_HINT, patterns,
                              ignore=["*.fp16.*", "unet/*", "text_encoder/*"])
    folder, cls = _autoencoder_folder(root)
    from diffusers import AutoencoderKL, VQModel  # lazy: diffusers is heavy to import

    loader = {"AutoencoderKL": AutoencoderKL, "VQModel": VQModel}[cls]
    try:
        model = loader.from_pretrained(folder, torch_dtype=torch.float32)
    except (OSError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise ConfigError(f"{folder}: cannot load the {cls} ({first})") from None
    dev = torch.device(device)
    model.requires_grad_(False)
    model.eval()
    model.to(dev)
    return Autoencoder(model=model, kind=KINDS[cls], source=str(source), device=dev)


@dataclass(frozen=True)
class AutoencoderFit:
    """The small VAE fitted on good images when no pretrained autoencoder is given (offline path)."""

    steps: int = 200
    lr: float = 1e-3
    batch_size: int = 4
    size: int = 64  # the images are resized to size x size for the fit (and the VAE runs at this size)
    kl_weight: float = 1e-3  # per latent element, against the mean absolute pixel error
    channels: tuple[int, ...] = (16, 32, 32)  # latent factor 4, no attention: fast on a CPU
    latent_channels: int = 4

    def __post_init__(self) -> None:
        f = 2 ** (len(self.channels) - 1)
        if (self.steps < 1 or self.batch_size < 1 or self.lr <= 0 or self.kl_weight < 0 or self.size < f
                or self.size % f or not self.channels):
            raise ConfigError(f"autoencoder fit: steps, batch_size >= 1, lr > 0, kl_weight >= 0, size a "
                              f"multiple of {f}; got {self}")

    def to_dict(self) -> dict:
        return {"steps": self.steps, "lr": self.lr, "batch_size": self.batch_size, "size": self.size,
                "kl_weight": self.kl_weight, "channels": list(self.channels),
                "latent_channels": self.latent_channels}


def fit_autoencoder(images: np.ndarray, seed: int, config: AutoencoderFit | None = None,
                    device: str | torch.device = "cpu") -> Autoencoder:
    """A small AutoencoderKL trained on (K, H, W, 3) uint8 `images` (the good training images only):
    mean absolute reconstruction error of the decoded posterior mean and of a posterior sample
    (the mean's term teaches the decoder fast while sigma is still near its initial 1; the
    sample's shrinks sigma where it matters) + `kl_weight` * KL to N(0, 1), Adam, on the images
    resized to `size` (whole images: GroupNorm makes a model fitted on crops decode whole images
    badly), batches drawn with replacement from stream (seed, GOOD_VAE_FIT), weights initialised
    from stream (seed, GOOD_VAE_INIT). The returned autoencoder's `size` says it runs at that size."""
    from diffusers import AutoencoderKL  # lazy: diffusers is heavy to import

    cfg = config or AutoencoderFit()
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or not len(images):
        raise ConfigError(f"fit_autoencoder needs (K>0, H, W, 3) images, got shape {images.shape}")
    images = resize_images(images, cfg.size)
    dev = torch.device(device)
    init = torch_generator(seed, Stream.GOOD_VAE_INIT)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init.initial_seed())
        groups = min(32, cfg.channels[0])
        model: Any = AutoencoderKL(block_out_channels=cfg.channels, in_channels=3, out_channels=3,
                              latent_channels=cfg.latent_channels,
                              down_block_types=("DownEncoderBlock2D",) * len(cfg.channels),
                              up_block_types=("UpDecoderBlock2D",) * len(cfg.channels),
                              layers_per_block=1, norm_num_groups=groups, sample_size=cfg.size,
                              mid_block_add_attention=False)
    model.to(dev)
    model.train()
    x_all = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    draw = torch_generator(seed, Stream.GOOD_VAE_FIT)
    for _ in range(cfg.steps):
        x = x_all[torch.randint(0, len(x_all), (cfg.batch_size,), generator=draw)].to(dev)
        dist = model.encode(x).latent_dist
        z = dist.mean + dist.std * torch.randn(dist.mean.shape, generator=draw).to(dev)
        rec = model.decode(torch.cat([dist.mean, z])).sample
        kl = 0.5 * (dist.mean ** 2 + dist.var - 1 - dist.logvar).mean()
        loss = (rec - torch.cat([x, x])).abs().mean() + cfg.kl_weight * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    model.requires_grad_(False)
    return Autoencoder(model=model, kind="kl", source="offline-fitted", device=dev, size=cfg.size)


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, size, size, 3) uint8 (area interpolation); unchanged if already so."""
    if images.shape[1:3] == (size, size):
        return images
    return np.stack([cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA) for im in images])
