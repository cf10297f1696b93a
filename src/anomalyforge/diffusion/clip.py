"""A CLIP model for TVG: scoring prompts against images and guiding a latent toward a prompt.

`load_clip` takes a transformers `CLIPModel` folder or hub id (TVG uses ViT-B/16:
openai/clip-vit-base-patch16) with its processor. `image_embeddings` is differentiable: the
images are resized to the model's input side and normalised with the processor's mean / std in
torch (the processor's own resize + centre crop runs on PIL images and would cut the gradient),
so `refine_latent` can move an autoencoder latent toward a prompt for N steps (TVG's
text-guided knowledge integrator; 20-30 steps published, more over-imprint the text), with an L2
pull back to the start latent so the part stays recognisable.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from anomalyforge.diffusion.autoencoder import resolve_pretrained
from anomalyforge.errors import ConfigError

CLIP_HINT = ("pass a transformers CLIPModel folder or hub id (TVG: openai/clip-vit-base-patch16, after "
             "`huggingface-cli download openai/clip-vit-base-patch16 --local-dir models/clip`)")


@dataclass
class Clip:
    """A frozen CLIP model, its tokenizer and image normalisation."""

    model: Any
    tokenizer: Any
    side: int  # input image side of the vision tower
    mean: torch.Tensor  # (1, 3, 1, 1)
    std: torch.Tensor
    device: torch.device
    source: str

    def image_embeddings(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] -> unit-norm image embeddings (B, D); differentiable."""
        x = (images.to(self.device, torch.float32) + 1) / 2
        x = F.interpolate(x, size=(self.side, self.side), mode="bicubic", align_corners=False, antialias=True)
        x = (x - self.mean.to(x.device)) / self.std.to(x.device)
        return F.normalize(_features(self.model.get_image_features(pixel_values=x)), dim=-1)

    @torch.no_grad()
    def text_embeddings(self, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """Unit-norm text embeddings (N, D) of `texts`."""
        out = []
        for i in range(0, len(texts), batch_size):
            tok = self.tokenizer(list(texts[i:i + batch_size]), padding=True, truncation=True, return_tensors="pt")
            tok = {k: v.to(self.device) for k, v in tok.items()}
            out.append(F.normalize(_features(self.model.get_text_features(**tok)), dim=-1))
        return torch.cat(out) if out else torch.empty(0, int(self.model.config.projection_dim))


def _features(out: Any) -> torch.Tensor:
    """The projected embedding from get_*_features (a tensor, or an output object in transformers 5)."""
    if isinstance(out, torch.Tensor):
        return out
    return out.pooler_output


def load_clip(source: str | Path, device: str | torch.device = "cpu") -> Clip:
    """Load a transformers CLIPModel + tokenizer + image processor settings; frozen, eval, fp32."""
    folder = resolve_pretrained(source, "CLIP model", CLIP_HINT, ["*.json", "*.txt", "*.safetensors"])
    from transformers import AutoTokenizer, CLIPImageProcessor, CLIPModel  # lazy: transformers is heavy to import
    from transformers.utils import logging as hf_logging  # lazy: as above

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # no "Loading weights" bar on stderr; restored below
    try:
        model = CLIPModel.from_pretrained(folder, torch_dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        proc = CLIPImageProcessor.from_pretrained(folder)
    except (OSError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise ConfigError(f"{folder}: cannot load the CLIP model ({first}); {CLIP_HINT}") from None
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    dev = torch.device(device)
    model.requires_grad_(False)
    model.eval()
    model.to(dev)  # type: ignore[arg-type]  # functools.wraps on PreTrainedModel.to hides the bound self
    vision: Any = model.config.vision_config  # a CLIPVisionConfig once loaded
    side = int(vision.image_size)
    mean = torch.tensor(proc.image_mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(proc.image_std, dtype=torch.float32).view(1, 3, 1, 1)
    return Clip(model=model, tokenizer=tokenizer, side=side, mean=mean, std=std, device=dev, source=str(source))


def refine_latent(latent: torch.Tensor, decode: Callable[[torch.Tensor], torch.Tensor], clip: Clip,
                  text: torch.Tensor, steps: int, lr: float = 0.05, anchor: float = 1.0) -> torch.Tensor:
    """Move `latent` (B, C, h, w) for `steps` Adam steps to raise the cosine similarity between
    CLIP(decode(latent)) and the unit text embedding `text` (D,), minus `anchor` * the mean squared
    distance to the start latent. Returns the refined latent (detached)."""
    if steps < 0 or lr <= 0 or anchor < 0:
        raise ConfigError(f"CLIP refinement: steps >= 0, lr > 0, anchor >= 0; got {steps}, {lr}, {anchor}")
    start = latent.detach()
    z = start.clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)
    target = text.to(clip.device).view(1, -1)
    for _ in range(steps):
        sim = (clip.image_embeddings(decode(z)) * target).sum(-1)
        loss = -sim.mean() + anchor * (z - start).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return z.detach()
