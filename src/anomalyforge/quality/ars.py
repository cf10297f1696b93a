"""Anomaly Region Score (GAA eq. 7) from a SimpleNet-style discriminator trained on good images.

SimpleNet (Liu et al., CVPR 2023): frozen pretrained features of good images, locally aggregated
(3x3 average), upsampled to a common grid and concatenated; a linear feature adaptor; pseudo-
anomalous features made by adding Gaussian noise N(0, sigma^2) (sigma = 0.015) to adapted
features; a 2-layer MLP discriminator trained with the truncated L1 loss
``max(0, th - D(normal)) + max(0, th + D(noisy))`` (th = 0.5). Optimisers as in SimpleNet:
adaptor Adam lr 1e-4, discriminator Adam lr 2e-4 with weight decay 1e-5.

Deviation, needed for the backbone: EfficientNet-Lite block outputs have a per-channel spread of
about 5 (WRN50 pooled features, SimpleNet's, are far smaller), so noise of 0.015 would be
invisible. Features are therefore standardised per channel with the good images' statistics and
scaled by `feature_scale` (0.1) before the adaptor: the noise is 15 % of a channel's spread.

The anomaly map is ``-D(adaptor(features))`` upsampled to the image and Gaussian-smoothed
(sigma 4 px, as SimpleNet); a pair's ARS is the map's mean inside its mask: high when the
masked region really looks anomalous, low when the mask covers normal-looking pixels
(nothing generated there, or the defect lies elsewhere).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from anomalyforge.atomic import write_json_atomic, write_with
from anomalyforge.data.io import read_image
from anomalyforge.errors import ConfigError, DataError
from anomalyforge.features.backbone import BackboneSpec, FeatureExtractor, frozen_extractor, to_tensor


@dataclass
class ARSConfig:
    """Discriminator settings; defaults follow SimpleNet where it specifies them."""

    size: int = 256
    backbone: str = "efficientnet-lite0"
    backbone_weights: str | None = "imagenet"
    levels: tuple[int, ...] = (2, 3)  # strides 8 and 16 (SimpleNet uses WRN50 layer2+3)
    patch: int = 3  # local aggregation neighbourhood
    adapted_dim: int = 0  # 0 = same as the aggregated feature width
    hidden: int = 1024  # SimpleNet dsc_hidden
    noise_std: float = 0.015
    margin: float = 0.5  # truncated-L1 threshold th
    adaptor_lr: float = 1e-4
    dsc_lr: float = 2e-4
    dsc_weight_decay: float = 1e-5
    feature_scale: float = 0.1  # features are standardised per channel, then scaled by this
    steps: int = 600
    batch_features: int = 1024
    max_images: int = 128  # good images used for training (evenly spaced over the list)
    smooth_sigma: float = 4.0

    @classmethod
    def from_dict(cls, d: dict) -> ARSConfig:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"ARS has no parameter(s) {', '.join(unknown)}")
        d = dict(d)
        if "levels" in d:
            d["levels"] = tuple(d["levels"])
        return cls(**d)


class _Discriminator(nn.Module):
    """SimpleNet's discriminator: Linear -> BatchNorm -> LeakyReLU(0.2) -> Linear(1)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(dim, hidden), nn.BatchNorm1d(hidden), nn.LeakyReLU(0.2))
        self.tail = nn.Linear(hidden, 1, bias=False)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_normal_(m.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(self.body(x)).squeeze(-1)


@lru_cache(maxsize=4)
def _shared_extractor(name: str, weights: str | None, levels: tuple[int, ...], device: str) -> FeatureExtractor:
    """Frozen extractors are read-only, so one per (backbone, weights, levels, device) is shared."""

    return frozen_extractor(BackboneSpec(name, weights, levels), device)


class ARSScorer:
    """Feature extractor + adaptor + discriminator. `fit` on good images, then `anomaly_maps`/`score`."""

    def __init__(self, config: ARSConfig | None = None, extractor: FeatureExtractor | None = None,
                 device: str | torch.device = "cpu") -> None:
        self.config = config or ARSConfig()
        self.device = torch.device(device)
        self.extractor = extractor if extractor is not None else _shared_extractor(
            self.config.backbone, self.config.backbone_weights, tuple(self.config.levels), str(self.device))
        self.in_dim = int(sum(self.extractor.channels))
        out_dim = self.config.adapted_dim or self.in_dim
        self.adaptor = nn.Linear(self.in_dim, out_dim).to(self.device)
        self.discriminator = _Discriminator(out_dim, self.config.hidden).to(self.device)
        self.history: list[float] = []
        self.mean = torch.zeros(self.in_dim, device=self.device)
        self.std = torch.ones(self.in_dim, device=self.device)

    def _normalise(self, flat: torch.Tensor) -> torch.Tensor:
        return (flat - self.mean) / self.std * self.config.feature_scale

    # ---- features --------------------------------------------------------------------------
    @torch.no_grad()
    def features(self, images: Sequence[np.ndarray], batch_size: int = 16) -> torch.Tensor:
        """(N, C, h, w): each level averaged over `patch` x `patch`, upsampled to the finest grid, concatenated."""

        size = self.config.size
        out = []
        for i in range(0, len(images), batch_size):
            batch = [im if im.shape[:2] == (size, size) else cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA)
                     for im in images[i:i + batch_size]]
            maps = self.extractor(to_tensor(batch).to(self.device))
            grid = maps[0].shape[-2:]
            p = self.config.patch
            agg = [F.avg_pool2d(m, p, stride=1, padding=p // 2, count_include_pad=False) for m in maps]
            agg = [a if a.shape[-2:] == grid else F.interpolate(a, size=grid, mode="bilinear", align_corners=False)
                   for a in agg]
            out.append(torch.cat(agg, dim=1))
        return torch.cat(out)

    # ---- training --------------------------------------------------------------------------
    def fit(self, images: Sequence[np.ndarray], seed: int = 0, progress: bool = True) -> list[float]:
        """Train adaptor + discriminator on good images only; returns the loss per step."""

        if len(images) == 0:
            raise ConfigError("ARS needs at least one good training image")
        cfg = self.config
        gen = torch.Generator().manual_seed(seed)
        with torch.random.fork_rng(devices=[]):  # seeded initialisation, global RNG left alone
            torch.manual_seed(seed)
            self.adaptor.reset_parameters()
            self.discriminator = _Discriminator(self.adaptor.out_features, cfg.hidden).to(self.device)
        feats = self.features(images)
        flat = feats.permute(0, 2, 3, 1).reshape(-1, feats.shape[1])
        self.mean = flat.mean(0).to(self.device)
        self.std = flat.std(0).clamp_min(1e-6).to(self.device)
        flat = self._normalise(flat.to(self.device))
        opt_a = torch.optim.Adam(self.adaptor.parameters(), lr=cfg.adaptor_lr)
        opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=cfg.dsc_lr, weight_decay=cfg.dsc_weight_decay)
        self.adaptor.train()
        self.discriminator.train()
        losses = []
        for _ in tqdm(range(cfg.steps), desc="ARS discriminator", disable=not progress):
            idx = torch.randint(0, flat.shape[0], (min(cfg.batch_features, flat.shape[0]),), generator=gen)
            true = self.adaptor(flat[idx])
            noise = torch.randn(true.shape, generator=gen).to(self.device) * cfg.noise_std
            fake = true + noise
            scores = self.discriminator(torch.cat([true, fake]))
            t, f = scores[: len(true)], scores[len(true):]
            loss = torch.clamp(cfg.margin - t, min=0).mean() + torch.clamp(cfg.margin + f, min=0).mean()
            opt_a.zero_grad()
            opt_d.zero_grad()
            loss.backward()
            opt_a.step()
            opt_d.step()
            losses.append(float(loss.detach()))
        self.adaptor.eval()
        self.discriminator.eval()
        self.history = losses
        return losses

    # ---- scoring ---------------------------------------------------------------------------
    @torch.no_grad()
    def anomaly_maps(self, images: Sequence[np.ndarray], out_size: tuple[int, int] | None = None,
                     batch_size: int = 16) -> np.ndarray:
        """(N, H, W) float32 anomaly maps (-D), upsampled to `out_size` (h, w) or to config.size and smoothed."""
        self.adaptor.eval()
        self.discriminator.eval()
        h, w = out_size or (self.config.size, self.config.size)
        maps = []
        for i in range(0, len(images), batch_size):
            f = self.features(images[i:i + batch_size], batch_size)
            n, c, gh, gw = f.shape
            s = -self.discriminator(self.adaptor(self._normalise(f.permute(0, 2, 3, 1).reshape(-1, c))))
            s = F.interpolate(s.reshape(n, 1, gh, gw), size=(h, w), mode="bilinear", align_corners=False)
            for m in s[:, 0].cpu().numpy():
                if self.config.smooth_sigma > 0:
                    m = cv2.GaussianBlur(m, (0, 0), self.config.smooth_sigma)
                maps.append(m.astype(np.float32))
        return np.stack(maps)

    def score(self, images: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> np.ndarray:
        """ARS of each (image, mask): the mean anomaly map inside the mask (NaN for an empty mask)."""
        if len(images) != len(masks):
            raise ConfigError(f"{len(images)} images but {len(masks)} masks")
        out = np.full(len(images), np.nan)
        if not images:
            return out
        for i, (img, m) in enumerate(zip(images, masks, strict=False)):
            if img.shape[:2] != m.shape[:2]:
                raise ConfigError(f"pair {i}: image {img.shape[1]}x{img.shape[0]} and mask "
                                  f"{m.shape[1]}x{m.shape[0]} differ in size")
        maps = self.anomaly_maps(images, (self.config.size, self.config.size))
        for i, (amap, m) in enumerate(zip(maps, masks, strict=False)):
            mm = m if m.shape[:2] == amap.shape else cv2.resize(m, amap.shape[::-1], interpolation=cv2.INTER_NEAREST)
            sel = mm > 0
            if sel.any():
                out[i] = float(amap[sel].mean())
        return out

    # ---- persistence -----------------------------------------------------------------------
    def save(self, folder: str | Path, fingerprint: str = "") -> None:
        """Weights (state.pt) and config (config.json) written atomically into `folder`."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {"adaptor": self.adaptor.state_dict(), "discriminator": self.discriminator.state_dict(),
                 "mean": self.mean.cpu(), "std": self.std.cpu()}
        write_with(folder / "state.pt", lambda fh: torch.save(state, fh))
        meta = {"config": asdict(self.config), "fingerprint": fingerprint,
                "final_loss": self.history[-1] if self.history else None}
        write_json_atomic(folder / "config.json", meta)

    @classmethod
    def load(cls, folder: str | Path, device: str | torch.device = "cpu",
             extractor: FeatureExtractor | None = None) -> ARSScorer:
        """Restore a scorer saved by `save`."""
        folder = Path(folder)
        try:
            meta = json.loads((folder / "config.json").read_text())
            state = torch.load(folder / "state.pt", map_location=device, weights_only=True)
        except FileNotFoundError as exc:
            raise DataError(exc.filename, "ARS state not found") from None
        except (json.JSONDecodeError, RuntimeError, KeyError) as exc:
            raise DataError(folder, f"unreadable ARS state ({exc.__class__.__name__})") from None
        obj = cls(ARSConfig.from_dict(meta["config"]), extractor, device)
        obj.adaptor.load_state_dict(state["adaptor"])
        obj.discriminator.load_state_dict(state["discriminator"])
        obj.mean, obj.std = state["mean"].to(obj.device), state["std"].to(obj.device)
        obj.adaptor.eval()
        obj.discriminator.eval()
        return obj


def fingerprint(paths: Sequence[str | Path], config: ARSConfig, seed: int) -> str:
    """Hash of the training images, config and seed: a cached discriminator is reused only when equal."""
    h = hashlib.sha256()
    h.update(json.dumps(asdict(config), sort_keys=True).encode())
    h.update(str(seed).encode())
    for p in paths:
        h.update(str(Path(p).resolve()).encode())
    return h.hexdigest()[:16]


def training_subset(items: Sequence, max_items: int) -> list:
    """At most `max_items`, evenly spaced (deterministic, covers the whole list)."""
    if max_items <= 0 or len(items) <= max_items:
        return list(items)
    idx = np.linspace(0, len(items) - 1, max_items).round().astype(int)
    return [items[i] for i in idx]


def train_or_load(good_paths: Sequence[str | Path], cache: str | Path | None, config: ARSConfig | None = None,
                  seed: int = 0, progress: bool = True, extractor: FeatureExtractor | None = None) -> ARSScorer:
    """A discriminator for these good images: loaded from `cache` when its fingerprint matches,
    else trained (on at most `max_images` of them) and saved there."""

    cfg = config or ARSConfig()
    paths = training_subset(list(good_paths), cfg.max_images)
    fp = fingerprint(paths, cfg, seed)
    if cache is not None and (Path(cache) / "config.json").is_file():
        try:
            meta = json.loads((Path(cache) / "config.json").read_text())
        except json.JSONDecodeError:
            meta = {}
        if meta.get("fingerprint") == fp and (Path(cache) / "state.pt").is_file():
            return ARSScorer.load(cache, extractor=extractor)
    scorer = ARSScorer(cfg, extractor)
    scorer.fit([read_image(p, cfg.size) for p in paths], seed=seed, progress=progress)
    if cache is not None:
        scorer.save(cache, fp)
    return scorer
