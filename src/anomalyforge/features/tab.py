"""TAB (Text-Aligned anomaly Backbone): prompts, text features, the alignment loss and one epoch.

A visual encoder E_V (the project's backbone, here EfficientNet-Lite0 from its offline ImageNet
weights) is trained so that the pooled, projected, L2-normalised feature of a normal image of
class c lies near the text feature of "normal c", and that of a synthetic anomaly of class c near
"abnormal c". The text features are fixed: either a frozen CLIP text tower (`clip_text_features`,
a hub id or a local folder), or, offline, seeded orthonormal prototypes (`orthonormal_prototypes`,
no language in them). E_V's stage weights are what detectors then load instead of ImageNet's.

Loss (`tab_loss`): the softmax over all 2C (class, state) text features, cross-entropy on normal
and on anomalous images, averaged. The paper writes it as a class softmax within each state; with
one class that term is constant, so the (class, state) softmax, which contains the class terms and
adds the normal-vs-abnormal one, is what is optimised here (documented in docs/methods.md).
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from anomalyforge.errors import ConfigError
from anomalyforge.features.backbone import BackboneSpec, FeatureExtractor, to_tensor

NORMAL_STATES = ("good {}", "unblemished {}", "normal {}", "perfect {}", "good condition {}", "{} without flaw",
                 "{} without defect", "{} without damage")
ABNORMAL_STATES = ("not good {}", "blemished {}", "abnormal {}", "imperfect {}", "damaged {}", "broken {}",
                   "{} with flaw", "{} with defect", "{} with damage", "{} with distortion", "{} with stains",
                   "{} with missing parts", "{} with broken parts", "{} with bumpy surfaces",
                   "{} with dirty background", "{} with scratch", "{} with hole")
TEMPLATES = ("a photo of a {}.", "a photo of the {}.", "an industrial photo of a {}.",
             "an industrial photo of the {}.", "an manufacturing photo of a {}.",
             "an manufacturing photo of the {}.", "a high reflection industrial photo of a {}.",
             "a high reflection industrial photo of the {}.", "an industrial photo of a rotated {}.",
             "an industrial photo of the rotated {}.", "a manufacturing cropped photo of a {}.",
             "a manufacturing cropped photo of the {}.", "a photo of the rotated {}.",
             "a closed-up photo of the {}.", "a blurry photo of the {}.", "a photo of the small {}.",
             "a photo of the big {}.", "a low resolution photo of the {}.", "a photo of one {}.",
             "a photo of multiple {}.")
NO_TEXT = "none"
NO_TEXT_NOTE = ("no text encoder: fixed seeded orthonormal (class, state) prototypes; they carry no language, "
                "so this is supervised normal/anomaly + class alignment, not text alignment")


@dataclass(frozen=True)
class TabConfig:
    """Every setting of one TAB pretraining (saved into backbone.json as `config`)."""

    name: str
    arch: str = "efficientnet-lite0"  # the trained encoder; also "resnet18" when its weights are present
    init: str | None = "imagenet"  # starting weights of E_V (None: random, for tests)
    size: int = 256  # images are read at this side ...
    crop: int = 224  # ... and centre-cropped to this (paper: 256 -> 224)
    epochs: int = 3
    batch_size: int = 16  # half normal, half synthetic anomalies
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 1e-4
    tau: float = 1 / 0.07  # logit scale (CLIP's initial temperature)
    max_good: int | None = 64  # good training images used per class (seeded draw); None = all
    anomalies_per_good: int = 1  # synthetic anomalies made per good image used
    proto_dim: int = 512  # width of the orthonormal prototypes without a text encoder (CLIP's)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


TAB_PROFILES: dict[str, TabConfig] = {
    "smoke": TabConfig(name="smoke", size=64, crop=56, epochs=2, batch_size=4, max_good=4, proto_dim=16),
    "cpu": TabConfig(name="cpu"),  # a few epochs at 224 px: fits a 2-core CPU (docs/results.md)
    "paper": TabConfig(name="paper", epochs=200, batch_size=512, lr=1e-4, max_good=None),
}


def tab_config(name: str | TabConfig, **overrides: Any) -> TabConfig:
    """The named TAB profile with optional overrides; unknown name or setting -> ConfigError."""
    cfg = name if isinstance(name, TabConfig) else TAB_PROFILES.get(name)
    if cfg is None:
        raise ConfigError(f"unknown pretraining profile {name!r}; available: {', '.join(TAB_PROFILES)}")
    names = {f.name for f in dataclasses.fields(TabConfig)}
    bad = sorted(set(overrides) - names)
    if bad:
        raise ConfigError(f"pretraining profile has no setting(s) {', '.join(bad)}")
    cfg = dataclasses.replace(cfg, **overrides)
    if cfg.crop > cfg.size or cfg.crop < 32:
        raise ConfigError(f"crop must be in [32, size={cfg.size}], got {cfg.crop}")
    if cfg.epochs < 1 or cfg.batch_size < 2 or cfg.anomalies_per_good < 1:
        raise ConfigError("epochs >= 1, batch_size >= 2 and anomalies_per_good >= 1 are required")
    if cfg.max_good is not None and cfg.max_good < 1:
        raise ConfigError(f"max_good must be >= 1 or None, got {cfg.max_good}")
    return cfg


def class_name_of(folder_name: str) -> str:
    """The prompt class name of a category folder: 'juice_bottle' -> 'juice bottle'."""
    return " ".join(folder_name.replace("-", "_").split("_")).strip() or folder_name


def sentences(class_name: str, normal: bool) -> list[str]:
    """Every template ∘ state ∘ class sentence of one class and state."""
    states = NORMAL_STATES if normal else ABNORMAL_STATES
    return [t.format(s.format(class_name)) for t in TEMPLATES for s in states]


def prompt_lists() -> dict[str, list[str]]:
    """The prompt lists as saved into backbone.json."""
    return {"templates": list(TEMPLATES), "normal": list(NORMAL_STATES), "abnormal": list(ABNORMAL_STATES)}


def orthonormal_prototypes(n_classes: int, dim: int, seed: int) -> torch.Tensor:
    """(C, 2, D) fixed orthonormal vectors, one per (class, state), from a seeded Gaussian's QR."""
    if dim < 2 * n_classes:
        raise ConfigError(f"proto_dim {dim} must be at least 2 x classes ({2 * n_classes})")
    gen = torch.Generator().manual_seed(int(seed))
    q, _ = torch.linalg.qr(torch.randn(dim, 2 * n_classes, generator=gen, dtype=torch.float64))
    return q.T.float().reshape(n_classes, 2, dim).contiguous()


def clip_text_features(encoder: str, class_names: list[str], device: str | torch.device = "cpu",
                       batch: int = 64) -> tuple[torch.Tensor, dict[str, Any]]:
    """(C, 2, D) text features of a frozen CLIP text tower and its identity.

    `encoder`: a hub id or local folder of a CLIP model / text model (a Stable Diffusion folder's
    `text_encoder/` + `tokenizer/` also work). Per class and state: the L2-normalised embedding of
    every sentence (the projected `text_embeds` when the checkpoint has CLIP's text projection,
    else the pooled output), averaged and renormalised."""
    from transformers import (  # lazy: transformers is heavy to import
        AutoConfig,
        CLIPTextModel,
        CLIPTextModelWithProjection,
        CLIPTokenizer,
    )

    sub: dict[str, dict[str, Any]] = {"tok": {}, "model": {}}
    if (Path(encoder) / "text_encoder").is_dir():  # a diffusers pipeline folder
        sub = {"tok": {"subfolder": "tokenizer"}, "model": {"subfolder": "text_encoder"}}
    try:
        arch = AutoConfig.from_pretrained(encoder, **sub["model"]).architectures or []
        projected = bool({"CLIPModel", "CLIPTextModelWithProjection"} & set(arch))
        cls = CLIPTextModelWithProjection if projected else CLIPTextModel
        tok = CLIPTokenizer.from_pretrained(encoder, **sub["tok"])
        model: Any = cls.from_pretrained(encoder, **sub["model"])  # transformers' types are loose
        model = model.to(device).eval()
    except Exception as exc:  # OSError offline / unknown id, ValueError on a folder of another model
        raise ConfigError(f"text encoder {encoder!r} cannot be loaded ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0][:160] if str(exc) else ''}); pass a local CLIP folder, "
                          f"or --text-encoder none for fixed prototypes") from None
    for p in model.parameters():
        p.requires_grad_(False)
    dim = model.config.projection_dim if projected else model.config.hidden_size
    out = torch.zeros(len(class_names), 2, dim)
    with torch.no_grad():
        for c, name in enumerate(class_names):
            for s, normal in enumerate((True, False)):
                texts = sentences(name, normal)
                embs = []
                for i in range(0, len(texts), batch):
                    t = tok(texts[i:i + batch], padding=True, truncation=True, return_tensors="pt").to(device)
                    o = model(**t)
                    e = o.text_embeds if projected else o.pooler_output
                    embs.append(F.normalize(e.float(), dim=-1).cpu())
                out[c, s] = F.normalize(torch.cat(embs).mean(0), dim=0)
    identity = {"kind": "clip", "id": str(encoder), "class": cls.__name__, "embedding": "text_embeds" if projected
                else "pooler_output", "commit": getattr(model.config, "_commit_hash", None),
                "files_sha256": _folder_hash(Path(encoder, sub["model"].get("subfolder", ""))),
                "config": {k: getattr(model.config, k, None) for k in
                           ("hidden_size", "num_attention_heads", "num_hidden_layers", "projection_dim",
                            "vocab_size")}}
    return out, identity


def _folder_hash(folder: Path) -> str | None:
    """sha256 over the weight files of a local model folder (None for a hub id)."""
    if not folder.is_dir():
        return None
    h = hashlib.sha256()
    for f in sorted(folder.glob("*")):
        if f.suffix in (".safetensors", ".bin") and f.is_file():
            h.update(f.name.encode())
            h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()


class TabEncoder(nn.Module):
    """E_V: the backbone's deepest level, global-average pooled, linearly projected to the text width
    and L2-normalised. BatchNorm keeps its statistics (eval mode), as the frozen detectors use them."""

    def __init__(self, arch: str, init: str | None, text_dim: int) -> None:
        super().__init__()
        level = 4
        self.extractor = FeatureExtractor(BackboneSpec(name=arch, weights=init, levels=(level,)))
        self.proj = nn.Linear(self.extractor.channels[0], text_dim)

    def train(self, mode: bool = True) -> TabEncoder:
        super().train(mode)
        for m in self.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
        return self

    @property
    def stages(self) -> nn.Module:
        """The stage module whose state dict is the backbone the detectors load."""
        return self.extractor.net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.extractor(x)[0].mean((2, 3))
        return F.normalize(self.proj(f), dim=-1)


def tab_loss(f_normal: torch.Tensor, c_normal: torch.Tensor, f_anomal: torch.Tensor, c_anomal: torch.Tensor,
             text: torch.Tensor, tau: float) -> torch.Tensor:
    """Mean of CE(τ·⟨f_n, T⟩, (class, normal)) and CE(τ·⟨f_a, T⟩, (class, abnormal)) over the
    flattened (C·2, D) text features `text` (class-major: index 2c = normal, 2c + 1 = abnormal)."""
    flat = text.reshape(-1, text.shape[-1])
    ln = tau * f_normal @ flat.T
    la = tau * f_anomal @ flat.T
    return 0.5 * (F.cross_entropy(ln, 2 * c_normal) + F.cross_entropy(la, 2 * c_anomal + 1))


def centre_crop(images: np.ndarray, crop: int) -> np.ndarray:
    """(N, S, S, 3) -> (N, crop, crop, 3), centred."""
    s = images.shape[1]
    o = (s - crop) // 2
    return images[:, o:o + crop, o:o + crop]


def train_epoch(model: TabEncoder, opt: torch.optim.Optimizer, normal: np.ndarray, normal_cls: np.ndarray,
                anomal: np.ndarray, anomal_cls: np.ndarray, text: torch.Tensor, cfg: TabConfig,
                gen: torch.Generator, device: torch.device, progress: Any = None) -> float:
    """One pass over the normal images, each batch half normal, half anomalies (drawn without
    replacement from a shuffled pool, cycled when shorter). Returns the mean loss."""
    model.train()
    half = max(1, cfg.batch_size // 2)
    order_n = torch.randperm(len(normal), generator=gen).numpy()
    order_a = torch.randperm(len(anomal), generator=gen).numpy()
    text = text.to(device)
    losses = []
    for b, i in enumerate(range(0, len(order_n), half)):
        idx_n = order_n[i:i + half]
        idx_a = order_a[np.arange(b * half, b * half + len(idx_n)) % len(order_a)]
        xn = to_tensor(centre_crop(normal[idx_n], cfg.crop)).to(device)
        xa = to_tensor(centre_crop(anomal[idx_a], cfg.crop)).to(device)
        f = model(torch.cat([xn, xa]))
        loss = tab_loss(f[:len(xn)], torch.from_numpy(normal_cls[idx_n]).long().to(device), f[len(xn):],
                        torch.from_numpy(anomal_cls[idx_a]).long().to(device), text, cfg.tau)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.item()))
        if progress is not None:
            progress.update(1)
            progress.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    return float(np.mean(losses))
