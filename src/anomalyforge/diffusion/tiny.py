"""A tiny random-weight text-to-image latent diffusion checkpoint in diffusers layout.

No Stable Diffusion weights ship with anomalyforge and none can be downloaded in tests, so the
diffusion code is exercised on a model with the same structure but a few thousand times fewer
weights (as diffusers' own tests do). The folder it writes loads with `load_ldm` like any
Stable Diffusion 1.x folder, so every diffusion command accepts it as `--base-model DIR`.
Its images are noise: it proves the plumbing, not the quality.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import torch

from anomalyforge.errors import ConfigError

# Characters the tiny byte-level BPE knows; anything else still tokenises (byte fallback).
_MERGE_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789"


def _bytes_to_unicode() -> dict[int, str]:
    """The reversible byte -> printable-unicode map used by GPT-2/CLIP byte-level BPE."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs), strict=False))


def _write_vocab(folder: Path) -> tuple[Path, Path]:
    """A minimal CLIP vocabulary: every byte, every byte at word end, a few merges, specials."""
    chars = list(_bytes_to_unicode().values())
    vocab: list[str] = chars + [c + "</w>" for c in chars]
    merges: list[str] = []
    # merge common lowercase bigrams so plain words do not explode into bytes
    for a in "aeiost":
        for b in _MERGE_CHARS[:26]:
            merges.append(f"{a} {b}")
            vocab.append(a + b)
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    vocab_path = folder / "vocab.json"
    merges_path = folder / "merges.txt"
    vocab_path.write_text(json.dumps({tok: i for i, tok in enumerate(vocab)}), encoding="utf-8")
    merges_path.write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    return vocab_path, merges_path


def make_tiny_model(directory: str | Path, seed: int = 0) -> Path:
    """Write a small random-weight SD-1.x-layout checkpoint (model_index.json, unet/, vae/,
    text_encoder/, tokenizer/, scheduler/) into `directory` and return its path.

    Latent factor 4, 4 latent channels, cross-attention width 32, 77-token CLIP text encoder.
    Deterministic in `seed`. Refuses a non-empty folder so nothing is overwritten.
    """
    from diffusers import (  # lazy: diffusers is heavy to import
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer  # lazy: transformers is heavy to import

    out = Path(directory)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        raise ConfigError(f"{out}: folder is not empty; choose a new folder for the tiny model")

    with tempfile.TemporaryDirectory() as tmp:
        vocab, merges = _write_vocab(Path(tmp))
        tokenizer = CLIPTokenizer(str(vocab), str(merges), model_max_length=77)

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=16, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8, norm_num_groups=32)
    vae = AutoencoderKL(
        block_out_channels=(32, 32, 64), in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
        layers_per_block=1, norm_num_groups=32, sample_size=64)
    text_config = CLIPTextConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, hidden_size=32, intermediate_size=37,
        num_attention_heads=4, num_hidden_layers=2, vocab_size=len(tokenizer),
        max_position_embeddings=77, projection_dim=32)
    text_encoder = CLIPTextModel(text_config)
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    # write beside the target and rename, so a failure never leaves a half-written model
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        pipe.save_pretrained(tmp, safe_serialization=True)  # type: ignore[attr-defined]  # mypy sees diffusers' dummy class
        if out.is_dir():
            out.rmdir()
        Path(tmp).rename(out)
        Path(tmp).mkdir()  # TemporaryDirectory cleans up the (now empty) name
    return out


def _save_atomically(out: Path, save) -> Path:
    """Refuse a non-empty `out`; call `save(tmp)` beside it and rename, so nothing is half-written."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        raise ConfigError(f"{out}: folder is not empty; choose a new folder for the tiny model")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        save(tmp)
        if out.is_dir():
            out.rmdir()
        Path(tmp).rename(out)
        Path(tmp).mkdir()  # TemporaryDirectory cleans up the (now empty) name
    return out


def make_tiny_autoencoder(directory: str | Path, kind: str = "kl", seed: int = 0) -> Path:
    """Write a small random-weight diffusers AutoencoderKL (`kind` "kl") or VQModel ("vq", a VQGAN
    with 64 codes) into `directory`: latent factor 4, 4 latent channels. Loads with
    `anomalyforge.diffusion.autoencoder.load_autoencoder` like a real one; its images are noise."""
    from diffusers import AutoencoderKL, VQModel  # lazy: diffusers is heavy to import

    blocks = dict(block_out_channels=(32, 32, 64), in_channels=3, out_channels=3, latent_channels=4,
                  down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
                  layers_per_block=1, norm_num_groups=32, sample_size=64)
    torch.manual_seed(seed)
    model: Any  # diffusers' classes: mypy sees its dummy objects
    if kind == "kl":
        model = AutoencoderKL(**blocks)
    elif kind == "vq":
        model = VQModel(**blocks, num_vq_embeddings=64)
    else:
        raise ConfigError(f"unknown tiny autoencoder kind {kind!r}; choose kl or vq")
    return _save_atomically(Path(directory), lambda tmp: model.save_pretrained(tmp, safe_serialization=True))


def make_tiny_clip(directory: str | Path, seed: int = 0) -> Path:
    """Write a small random-weight transformers CLIPModel with tokenizer and image processor
    (ViT, 32 px input, width 32) into `directory`; loads with `anomalyforge.diffusion.clip.load_clip`."""
    from transformers import (  # lazy: transformers is heavy to import
        CLIPConfig,
        CLIPImageProcessor,
        CLIPModel,
        CLIPTextConfig,
        CLIPTokenizer,
        CLIPVisionConfig,
    )

    with tempfile.TemporaryDirectory() as tmp:
        vocab, merges = _write_vocab(Path(tmp))
        tokenizer = CLIPTokenizer(str(vocab), str(merges), model_max_length=77)
    text = CLIPTextConfig(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                          pad_token_id=tokenizer.pad_token_id, hidden_size=32, intermediate_size=37,
                          num_attention_heads=4, num_hidden_layers=2, vocab_size=len(tokenizer),
                          max_position_embeddings=77, projection_dim=32)
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
                              image_size=32, patch_size=8, projection_dim=32)
    torch.manual_seed(seed)
    model = CLIPModel(CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=32))
    proc = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})

    def save(tmp: str) -> None:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        proc.save_pretrained(tmp)

    return _save_atomically(Path(directory), save)
