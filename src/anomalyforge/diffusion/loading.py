"""Loading a text-conditioned latent diffusion model (Stable Diffusion 1.x/2.x layout) with diffusers.

`load_ldm(base_model)` accepts a local folder in diffusers layout or a Hugging Face hub id that is
already in the local cache (or downloadable when online). Anything else is a one-line
`ConfigError` saying what to download and how to pass it. The returned `LDM` bundles the five
components, the device, the compute dtype and the latent geometry every other module uses.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from anomalyforge.errors import ConfigError

# pipelines whose folders hold a UNet2DConditionModel + AutoencoderKL + CLIP text encoder/tokenizer
TEXT_LDM_PIPELINES = {
    "StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline", "StableDiffusionInpaintPipeline",
    "LDMTextToImagePipeline", "AltDiffusionPipeline", "StableDiffusionPipelineSafe",
}
REQUIRED_PARTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
DOWNLOAD_HINT = ("download a Stable Diffusion 1.x/2.x checkpoint first, e.g. `huggingface-cli download "
                 "stable-diffusion-v1-5/stable-diffusion-v1-5 --local-dir models/sd15`, and pass "
                 "`--base-model models/sd15` (or `anomalyforge make-tiny-model DIR` for a test model)")


@dataclass
class LDM:
    """The frozen parts of a text-to-image latent diffusion model and where they run."""

    unet: Any
    vae: Any
    text_encoder: Any
    tokenizer: Any
    scheduler_config: dict
    device: torch.device
    dtype: torch.dtype
    source: str

    @property
    def vae_scale_factor(self) -> int:
        """Pixels per latent cell (8 for Stable Diffusion)."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def latent_channels(self) -> int:
        return int(self.unet.config.in_channels)

    @property
    def scaling_factor(self) -> float:
        return float(getattr(self.vae.config, "scaling_factor", 0.18215))

    @property
    def text_dim(self) -> int:
        return int(self.text_encoder.config.hidden_size)

    def make_scheduler(self, kind: str = "ddim") -> Any:
        """A fresh scheduler of `kind` ("ddim" or "ddpm") built from the checkpoint's noise schedule."""
        from diffusers import DDIMScheduler, DDPMScheduler  # lazy: diffusers is heavy to import

        kinds = {"ddim": DDIMScheduler, "ddpm": DDPMScheduler}
        if kind not in kinds:
            raise ConfigError(f"unknown sampler {kind!r}; choose one of: {', '.join(kinds)}")
        cfg = dict(self.scheduler_config)
        cfg.setdefault("clip_sample", False)
        return kinds[kind].from_config(cfg)

    @torch.no_grad()
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] -> scaled latents (B, C, H/f, W/f); uses the posterior mean so it is
        deterministic."""
        x = images.to(self.device, self.dtype)
        return self.vae.encode(x).latent_dist.mean.float() * self.scaling_factor

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents -> images (B, 3, H, W) in [-1, 1] (float32)."""
        x = (latents / self.scaling_factor).to(self.device, self.dtype)
        return self.vae.decode(x).sample.float().clamp(-1, 1)


def pick_diffusion_device(device: str | None = None) -> torch.device:
    """`device` if given ("cpu", "cuda", "cuda:1", "mps"), else CUDA when available, else CPU."""
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"unknown device {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available")
    return dev


def pick_dtype(device: torch.device, precision: str = "auto") -> torch.dtype:
    """`precision` in auto|fp32|fp16|bf16. auto: bf16 on CUDA devices that support it (fp32 on older
    ones), fp32 on CPU/MPS. Not fp16: the generators fit embeddings and adapters through the frozen
    model, and fp16 gradients underflow without loss scaling (fp16 on request still works: fitting
    then scales the loss, see `masked_loss.train_params`)."""
    table = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    if precision == "auto":
        if device.type == "cuda":
            try:
                bf16 = bool(torch.cuda.is_bf16_supported())
            except (RuntimeError, AssertionError):  # no driver: the load fails later with its own error
                bf16 = False
            return torch.bfloat16 if bf16 else torch.float32
        return torch.float32
    if precision not in table:
        raise ConfigError(f"unknown precision {precision!r}; choose auto, fp32, fp16 or bf16")
    if device.type == "cpu" and precision == "fp16":
        raise ConfigError("precision fp16 is not supported on CPU; use fp32 or bf16")
    return table[precision]


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")


def _looks_like_path(name: str) -> bool:
    """True unless `name` has the shape of a hub id ("org/name")."""
    return _HUB_ID.match(name) is None


def resolve_base_model(base_model: str | Path | None) -> Path:
    """The local folder of `base_model`: an existing folder, or a hub id from the cache / the hub."""
    if base_model is None or str(base_model).strip() == "":
        raise ConfigError(f"no base model given (--base-model); {DOWNLOAD_HINT}")
    name = str(base_model)
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ConfigError(f"{path}: base model must be a diffusers folder, not a file")
        return path
    if _looks_like_path(name):
        raise ConfigError(f"{path}: base model folder not found; {DOWNLOAD_HINT}")
    from huggingface_hub import snapshot_download  # lazy: huggingface_hub is heavy to import

    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    patterns = ["model_index.json", "*/*.json", "*/*.txt", "*/*.safetensors"]
    # only the five parts in full precision: no fp16/non-EMA duplicates, no safety checker
    ignore = ["*.fp16.*", "*non_ema*", "safety_checker/*", "feature_extractor/*", "image_encoder/*"]
    try:
        return Path(snapshot_download(name, allow_patterns=patterns, ignore_patterns=ignore,
                                      local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached: try the hub unless offline
        if offline:
            raise ConfigError(f"base model {name!r} is not in the local Hugging Face cache and "
                              f"HF_HUB_OFFLINE is set; {DOWNLOAD_HINT}") from None
    try:
        return Path(snapshot_download(name, allow_patterns=patterns, ignore_patterns=ignore))
    except Exception as exc:  # noqa: BLE001 - network, auth, missing repo: all need the same action
        raise ConfigError(f"base model {name!r} could not be fetched ({exc.__class__.__name__}); "
                          f"{DOWNLOAD_HINT}") from None


def check_ldm_folder(folder: Path) -> None:
    """Raise a ConfigError unless `folder` holds a text-conditioned latent diffusion model."""
    index = folder / "model_index.json"
    if index.is_file():
        try:
            meta = json.loads(index.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{index}: unreadable model_index.json ({exc})") from None
        cls = meta.get("_class_name", "?")
        if cls not in TEXT_LDM_PIPELINES:
            raise ConfigError(f"{folder}: holds a {cls}, not a text-conditioned latent diffusion model "
                              f"(need one of {', '.join(sorted(TEXT_LDM_PIPELINES))})")
    missing = [p for p in REQUIRED_PARTS if not (folder / p).is_dir()]
    if missing:
        raise ConfigError(f"{folder}: not a text-conditioned latent diffusion model in diffusers layout "
                          f"(missing {', '.join(m + '/' for m in missing)}); {DOWNLOAD_HINT}")


def load_ldm(base_model: str | Path | None, device: str | None = None, precision: str = "auto") -> LDM:
    """Load UNet, VAE, CLIP text encoder + tokenizer and the noise schedule of `base_model`.

    All weights are frozen (requires_grad False) and in eval mode; anomalyforge only trains new
    embeddings and small encoders on top. bf16 on CUDA (fp32 where bf16 is unsupported), fp32 on CPU
    unless `precision` says otherwise.
    """
    folder = resolve_base_model(base_model)
    check_ldm_folder(folder)
    dev = pick_diffusion_device(device)
    dtype = pick_dtype(dev, precision)
    from diffusers import AutoencoderKL, UNet2DConditionModel  # lazy: diffusers is heavy to import
    from transformers import CLIPTextModel, CLIPTokenizer  # lazy: transformers is heavy to import

    try:
        unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet", torch_dtype=dtype)
        vae = AutoencoderKL.from_pretrained(folder, subfolder="vae", torch_dtype=dtype)
        text_encoder = CLIPTextModel.from_pretrained(folder, subfolder="text_encoder", torch_dtype=dtype)
        tokenizer = CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer")
        sched_path = folder / "scheduler" / "scheduler_config.json"
        scheduler_config = json.loads(sched_path.read_text(encoding="utf-8"))
    except (OSError, ValueError, json.JSONDecodeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise ConfigError(f"{folder}: cannot load the latent diffusion model ({first})") from None
    scheduler_config = {k: v for k, v in scheduler_config.items() if not k.startswith("_")}
    for module in (unet, vae, text_encoder):
        module.requires_grad_(False)
        module.eval()
        module.to(dev)  # type: ignore[arg-type]  # functools.wraps on PreTrainedModel.to hides the bound self
    return LDM(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
               scheduler_config=scheduler_config, device=dev, dtype=dtype, source=str(base_model))
