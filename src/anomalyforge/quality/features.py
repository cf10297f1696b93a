"""Descriptors of a defect *region* (image + mask) used to cluster few-shot defects into concepts.

Three blocks, as in GAA's anomaly-concept clustering:
- deep: multi-layer CNN (or ViT) features, masked-average-pooled over the defect mask;
- colour: CIELAB mean and standard deviation per channel inside the mask;
- texture: uniform LBP histograms (skimage) inside the mask, at two radii.
Each block is standardised across the samples, scaled to unit total variance and weighted, so a
block's influence is set by its weight and not by how many dimensions it has.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from skimage.feature import local_binary_pattern

from anomalyforge.errors import ConfigError
from anomalyforge.features.backbone import BackboneSpec, frozen_extractor, to_tensor

if TYPE_CHECKING:
    from torchvision.models import VisionTransformer  # torchvision is untyped: Any to mypy

# An extractor maps a float tensor (N, 3, H, W) in [0, 1] to a list of feature maps (N, C, h, w).
MapExtractor = Callable[[torch.Tensor], Sequence[torch.Tensor]]


@dataclass
class FeatureWeights:
    """Relative weight of each descriptor block in the concatenated feature."""

    deep: float = 1.0
    colour: float = 0.5
    texture: float = 0.5


@lru_cache(maxsize=4)
def cnn_extractor(levels: tuple[int, ...] = (1, 2, 3, 4), weights: str | None = "imagenet",
                  name: str = "efficientnet-lite0", device: str = "cpu") -> MapExtractor:
    """The project's frozen backbone (EfficientNet-Lite0 ImageNet weights by default, offline).
    Frozen and read-only, so one instance per argument set is shared (loading takes seconds)."""

    return frozen_extractor(BackboneSpec(name=name, weights=weights, levels=levels), device)


class ViTExtractor(torch.nn.Module):
    """Patch tokens of chosen encoder blocks of a torchvision VisionTransformer as (N, D, g, g) maps.

    Images are resized to the model's input size; g = image_size / patch_size (14 for ViT-B/16).
    """

    mean: torch.Tensor  # buffers registered in __init__
    std: torch.Tensor

    def __init__(self, net: VisionTransformer, blocks: tuple[int, ...] = (5, 8, 11)) -> None:
        super().__init__()
        self.net = net.eval()
        self.blocks = blocks
        self.grid = net.image_size // net.patch_size
        for p in self.parameters():
            p.requires_grad_(False)
        self.register_buffer("mean", torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1), persistent=False)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        size = self.net.image_size
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        x = self.net._process_input((x - self.mean) / self.std)
        cls = self.net.class_token.expand(x.shape[0], -1, -1)
        h = torch.cat([cls, x], dim=1) + self.net.encoder.pos_embedding
        outs = []
        for i, layer in enumerate(self.net.encoder.layers):
            h = layer(h)
            if i in self.blocks:
                tok = h[:, 1:]
                outs.append(tok.transpose(1, 2).reshape(h.shape[0], -1, self.grid, self.grid))
            if i >= max(self.blocks):
                break
        return outs


def vit_b16_extractor(weights: str | None, blocks: tuple[int, ...] = (5, 8, 11)) -> ViTExtractor:
    """ViT-B/16 from a local state-dict file (the user's weights) or a torchvision weights name
    such as "DEFAULT" (downloads when online)."""
    import torchvision  # lazy: torchvision is heavy to import

    if weights is not None and str(weights).endswith((".pth", ".pt")):
        if not Path(weights).is_file():
            raise ConfigError(f"{weights}: ViT weights file not found")
        net = torchvision.models.vit_b_16(weights=None)
        net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    else:
        net = torchvision.models.vit_b_16(weights=weights)
    return ViTExtractor(net, blocks)


def make_extractor(kind: str = "cnn", weights: str | None = "imagenet", device: str = "cpu") -> MapExtractor:
    """"cnn" (EfficientNet-Lite0, offline) or "vit" (ViT-B/16; needs `weights`)."""
    if kind == "cnn":
        return cnn_extractor(weights=weights, device=device)
    if kind == "vit":
        if weights == "imagenet":
            raise ConfigError("the ViT-B/16 extractor needs weights: a .pth file or a torchvision weights name")
        return vit_b16_extractor(weights).to(device)
    raise ConfigError(f"unknown feature extractor {kind!r}; use cnn or vit")


def _device(extractor: MapExtractor) -> torch.device:
    if isinstance(extractor, torch.nn.Module):
        for p in extractor.parameters():
            return p.device
    return torch.device("cpu")


@torch.no_grad()
def deep_features(images: Sequence[np.ndarray], masks: Sequence[np.ndarray], extractor: MapExtractor,
                  batch_size: int = 8) -> np.ndarray:
    """(N, sum C) masked average pooling of every feature map over the (area-resized) defect mask."""

    dev = _device(extractor)
    out = []
    for i in range(0, len(images), batch_size):
        x = to_tensor(list(images[i:i + batch_size])).to(dev)
        m = torch.from_numpy(np.stack(masks[i:i + batch_size]).astype(np.float32) / 255.0)[:, None].to(dev)
        pooled = []
        for fmap in extractor(x):
            # fraction of each cell inside the mask (the stub wants a 2-tuple; a torch.Size works)
            w = F.adaptive_avg_pool2d(m, fmap.shape[-2:])  # type: ignore[arg-type]
            w = w / w.sum(dim=(2, 3), keepdim=True).clamp_min(1e-8)
            pooled.append((fmap.float() * w).sum(dim=(2, 3)))
        out.append(torch.cat(pooled, dim=1).cpu().numpy())
    return np.concatenate(out).astype(np.float64)


def colour_features(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """CIELAB mean and std per channel inside the mask (6 values)."""
    lab = cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)[mask > 0]
    if lab.size == 0:
        raise ConfigError("empty defect mask: no region to describe")
    return np.concatenate([lab.mean(axis=0), lab.std(axis=0)]).astype(np.float64)


def texture_features(image: np.ndarray, mask: np.ndarray, scales: Sequence[tuple[int, float]] = ((8, 1.0), (16, 2.0))
                     ) -> np.ndarray:
    """Normalised uniform-LBP histograms inside the mask, one per (points, radius)."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    sel = mask > 0
    hists = []
    for p, r in scales:
        codes = local_binary_pattern(grey, p, r, method="uniform")[sel]
        h = np.bincount(codes.astype(np.int64), minlength=p + 2)[: p + 2].astype(np.float64)
        hists.append(h / max(h.sum(), 1.0))
    return np.concatenate(hists)


def _standardise(block: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance per column (constant columns become 0), then unit total variance."""
    mu = block.mean(axis=0)
    sd = block.std(axis=0)
    z = np.where(sd > 1e-12, (block - mu) / np.where(sd > 1e-12, sd, 1.0), 0.0)
    return z / np.sqrt(max(block.shape[1], 1))


def region_features(images: Sequence[np.ndarray], masks: Sequence[np.ndarray], extractor: MapExtractor | None,
                    weights: FeatureWeights | None = None) -> np.ndarray:
    """(N, D) weighted concatenation of standardised deep, colour and texture blocks.

    `extractor=None` or weight 0 leaves the deep block out (colour/texture-only clustering).
    """
    if len(images) != len(masks) or not images:
        raise ConfigError(f"need matching, non-empty images and masks ({len(images)} vs {len(masks)})")
    w = weights or FeatureWeights()
    pairs = list(zip(images, masks, strict=True))
    blocks = []
    if extractor is not None and w.deep > 0:
        blocks.append(w.deep * _standardise(deep_features(images, masks, extractor)))
    if w.colour > 0:
        blocks.append(w.colour * _standardise(np.stack([colour_features(i, m) for i, m in pairs])))
    if w.texture > 0:
        blocks.append(w.texture * _standardise(np.stack([texture_features(i, m) for i, m in pairs])))
    if not blocks:
        raise ConfigError("all feature weights are zero")
    return np.concatenate(blocks, axis=1)
