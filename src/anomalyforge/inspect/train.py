"""Training of the localisation models on generated pairs plus good training images.

Leak-free by construction: `train_localizer` receives only the few-shot `FitData` (good
training images) and the generated pairs; it trains for the profile's fixed schedule and
returns the final model. No test image, score or threshold ever reaches this module.
With `profile.fusion` > 0 the supervised map is fused with a PatchCore map of the good training
images; both maps are standardised on good TRAINING images held out of both models.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Protocol, cast

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from anomalyforge.data.fitdata import FitData
from anomalyforge.data.io import read_image
from anomalyforge.errors import ConfigError
from anomalyforge.features.backbone import pick_device, to_tensor
from anomalyforge.inspect.augment import flip_rotate
from anomalyforge.inspect.banks import BankCache, fit_patchcore
from anomalyforge.inspect.losses import seg_loss
from anomalyforge.inspect.models import FeatureHead, LiteUNet, build_localizer, head_layout
from anomalyforge.inspect.pairs import GeneratedPairs
from anomalyforge.inspect.patchcore import PatchCore
from anomalyforge.inspect.profiles import FROM_PROFILE, Profile, backbone_arch, weights_for


def good_images(fit: FitData, size: int, progress: bool = True) -> np.ndarray:
    """The good training images of `fit` as (N, size, size, 3) uint8."""

    imgs = [fit.image(s) if fit.size == size else read_image(s.image, size)
            for s in tqdm(fit.good, desc="good images", disable=not progress, leave=False)]
    return np.stack(imgs) if imgs else np.zeros((0, size, size, 3), np.uint8)


@dataclass
class Localizer:
    """A trained localisation model and how to run it."""

    model: nn.Module
    name: str
    size: int
    device: torch.device
    batch_size: int = 16
    tta: bool = False  # average over horizontal / vertical flips
    # the frozen-backbone features it trained on (a FeatureHead's), kept for the k-fold refits
    # (`inspect.kfold`) so they need not run the backbone again; `drop_features` when done
    features: FeatureCache | None = field(default=None, repr=False, compare=False)

    def drop_features(self) -> None:
        """Free the training features (a delivered model does not need them)."""
        self.features = None

    @torch.no_grad()
    def _run(self, images: np.ndarray, progress: bool, probs: bool) -> np.ndarray:
        self.model.eval()
        out = []
        flips = [(), (-1,), (-2,), (-2, -1)] if self.tta else [()]
        act = torch.sigmoid if probs else (lambda t: t)
        for i in tqdm(range(0, len(images), self.batch_size), desc="predict", disable=not progress, leave=False):
            x = to_tensor(images[i:i + self.batch_size]).to(self.device)
            p = cast(torch.Tensor, sum(act(self.model(x.flip(d) if d else x)).flip(d) if d else  # sum(): "| int"
                                       act(self.model(x)) for d in flips) / len(flips))
            out.append(p[:, 0].float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0,) + images.shape[1:3], np.float32)

    def predict(self, images: np.ndarray, progress: bool = False) -> np.ndarray:
        """(N, S, S, 3) uint8 -> (N, S, S) float32 defect probabilities at the input size."""
        return self._run(images, progress, probs=True)

    def logits(self, images: np.ndarray, progress: bool = False) -> np.ndarray:
        """(N, S, S, 3) uint8 -> (N, S, S) float32 defect logits (flip-averaged when `tta`)."""
        return self._run(images, progress, probs=False)


@dataclass
class FusedLocalizer:
    """A supervised localiser fused with an unsupervised PatchCore map (profile `fusion` > 0).

    Why: a head trained on generated defects misses defect parts unlike anything generated
    (low scores inside a real defect); PatchCore flags anything unlike the good images but
    is blurry. Each map is standardised by its pixel mean / std on held-out good TRAINING
    images (never seen by either model), then mixed: s = (1 - w) z_sup + w z_pc, and squashed
    monotonically into (0, 1) by 0.5 + 0.5 s / (1 + |s|) (ranks kept, no saturation).
    """

    supervised: Localizer
    patchcore: PatchCore
    weight: float
    sup_stats: tuple[float, float]  # (mean, std) of the supervised logits on held-out goods
    pc_stats: tuple[float, float]  # (mean, std) of the PatchCore distances on held-out goods

    @property
    def name(self) -> str:
        return self.supervised.name

    @property
    def size(self) -> int:
        return self.supervised.size

    def fused_scores(self, images: np.ndarray, progress: bool = False) -> np.ndarray:
        """Unsquashed fused score (N, S, S): weighted sum of the two standardised maps."""
        zs = (self.supervised.logits(images, progress) - self.sup_stats[0]) / self.sup_stats[1]
        zp = (self.patchcore.predict(images, progress) - self.pc_stats[0]) / self.pc_stats[1]
        return ((1.0 - self.weight) * zs + self.weight * zp).astype(np.float32)

    def predict(self, images: np.ndarray, progress: bool = False) -> np.ndarray:
        """(N, S, S, 3) uint8 -> (N, S, S) float32 fused defect scores in (0, 1)."""
        s = self.fused_scores(images, progress)
        return (0.5 + 0.5 * s / (1.0 + np.abs(s))).astype(np.float32)


def _stats(maps: np.ndarray) -> tuple[float, float]:
    m = maps.astype(np.float64)
    return float(m.mean()), float(max(m.std(), 1e-6))


def holdout_goods(fit: FitData, share: float, seed: int) -> tuple[FitData, FitData]:
    """(rest, held): a seeded `share` of the good training images held out (at least one kept in
    `rest`; none held when there are fewer than 2 or round(share * n) is 0), in file order.
    `train_fused_localizer` standardises on `held` with (profile.fusion_holdout, seed); the benchmark
    uses the same draw to set its heat-map scale on goods no model trained on."""
    n = len(fit.good)
    k = max(0, min(int(round(n * share)), n - 1))
    order = np.random.default_rng(seed).permutation(n)
    return (dataclasses.replace(fit, good=[fit.good[i] for i in sorted(order[k:])]),
            dataclasses.replace(fit, good=[fit.good[i] for i in sorted(order[:k])]))


def train_fused_localizer(fit: FitData, pairs: GeneratedPairs, profile: Profile, seed: int = 0,
                          progress: bool = True, weights: str | None = FROM_PROFILE,
                          banks: BankCache | None = None) -> FusedLocalizer:
    """Supervised localiser + PatchCore on the good training images, fused (see `FusedLocalizer`).

    A seeded `fusion_holdout` share of the good training images is held out of both models and
    used only to standardise their maps; the rest trains the supervised model and the bank.
    `banks`: a cache that may already hold that PatchCore (the benchmark's baseline is the same model).
    """

    if not 0.0 < profile.fusion <= 1.0:
        raise ConfigError(f"fusion weight must be in (0, 1], got {profile.fusion}")
    rest, held_fit = holdout_goods(fit, profile.fusion_holdout, seed)
    held = held_fit.good
    if not held:
        raise ConfigError(f"fusion needs at least 2 good training images to hold some out, got {len(fit.good)}")
    sup = train_supervised(rest, pairs, dataclasses.replace(profile, fusion=0.0), seed, progress, weights)
    pc = fit_patchcore(rest, lambda: good_images(rest, profile.size, progress), profile, seed,
                       weights_for(profile, weights), progress, banks)
    ref = good_images(dataclasses.replace(rest, good=held), profile.size, progress)
    return FusedLocalizer(sup, pc, float(profile.fusion), _stats(sup.logits(ref)), _stats(pc.predict(ref)))


def _schedule(profile: Profile, n_pairs: int, n_def: int) -> int:
    if profile.epochs > 0:
        return profile.epochs * max(1, math.ceil(n_pairs / max(1, n_def)))
    return max(1, profile.steps)


def _cache_features(model: FeatureHead, images: np.ndarray, device: torch.device, desc: str,
                    progress: bool, bs: int = 16) -> list[torch.Tensor]:
    """Frozen-backbone features of every image, fp16 on CPU, one tensor per level."""
    chunks: list[list[torch.Tensor]] = []
    for i in tqdm(range(0, len(images), bs), desc=desc, disable=not progress, leave=False):
        feats = model.features(to_tensor(images[i:i + bs]).to(device))
        chunks.append([f.half().cpu() for f in feats])
    return [torch.cat([c[k] for c in chunks]) for k in range(len(chunks[0]))]


class MapPredictor(Protocol):
    """What the benchmark needs of a trained localiser: anomaly maps at its input size."""

    @property
    def name(self) -> str: ...

    @property
    def size(self) -> int: ...

    def predict(self, images: np.ndarray, progress: bool = False) -> np.ndarray: ...


def train_localizer(fit: FitData, pairs: GeneratedPairs, profile: Profile, seed: int = 0,
                    progress: bool = True, weights: str | None = FROM_PROFILE,
                    banks: BankCache | None = None) -> MapPredictor:
    """The profile's localiser: a `FusedLocalizer` when `profile.fusion` > 0 (its PatchCore through
    `banks` when given), else the supervised model alone (`train_supervised`)."""
    if profile.fusion:
        return train_fused_localizer(fit, pairs, profile, seed, progress, weights, banks)
    return train_supervised(fit, pairs, profile, seed, progress, weights)


def cache_features(model: nn.Module, fit: FitData, pairs: GeneratedPairs, size: int,
                   progress: bool = False) -> FeatureCache | None:
    """Frozen-backbone features of `fit.good` and of `pairs` (a FeatureHead's; None for any other
    model), for `train_supervised(features=...)`: the k-fold refits slice one cache instead of
    re-running the backbone per fold."""
    if not isinstance(model, FeatureHead):
        return None
    device = next(model.parameters()).device
    goods = good_images(fit, size, progress)
    return FeatureCache(_cache_features(model, goods, device, "features (good)", progress) if len(goods) else None,
                        _cache_features(model, _pair_images(pairs, size), device, "features (pairs)", progress),
                        source=(_good_keys(fit), pairs))


def _good_keys(fit: FitData) -> tuple[str, ...]:
    return tuple(str(s.image) for s in fit.good)


@dataclass
class FeatureCache:
    """Frozen-backbone features (fp16, one tensor per level) of good images and of generated pairs."""

    good: list[torch.Tensor] | None
    pairs: list[torch.Tensor]
    # what they were computed from: the good images' paths and the pairs object (None: a selection)
    source: tuple[tuple[str, ...], GeneratedPairs] | None = field(default=None, repr=False, compare=False)

    def made_from(self, fit: FitData, pairs: GeneratedPairs) -> bool:
        """Whether these are the features of exactly `fit.good` and `pairs` (at the model's size)."""
        return self.source is not None and self.source[1] is pairs and self.source[0] == _good_keys(fit)

    def select(self, good: np.ndarray | None, pairs: np.ndarray) -> FeatureCache:
        """The features of the good images at indices `good` (all when None) and pairs at `pairs`."""
        g = self.good
        if g is not None and good is not None:
            gi = torch.from_numpy(np.asarray(good, np.int64))
            g = [f[gi] for f in g]
        pi = torch.from_numpy(np.asarray(pairs, np.int64))
        return FeatureCache(g, [f[pi] for f in self.pairs])


def _pair_images(pairs: GeneratedPairs, size: int) -> np.ndarray:
    if pairs.images.shape[1] == size:
        return pairs.images
    return np.stack([cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA) for im in pairs.images])


def _pair_masks(pairs: GeneratedPairs, size: int) -> np.ndarray:
    if pairs.masks.shape[1] == size:
        return pairs.masks
    return np.stack([np.where(cv2.resize(m, (size, size), interpolation=cv2.INTER_AREA) >= 64, 255, 0)
                     .astype(np.uint8) for m in pairs.masks])


def train_supervised(fit: FitData, pairs: GeneratedPairs, profile: Profile, seed: int = 0,
                     progress: bool = True, weights: str | None = FROM_PROFILE,
                     features: FeatureCache | None = None) -> Localizer:
    """Train the profile's supervised localisation model on generated pairs + good training images.

    Each batch holds `good_fraction` good images (target all zero) and generated pairs, drawn by
    a seeded generator; augmentation is seeded too, so the same seed gives the same model.
    `features`: the backbone features of `fit.good` and `pairs` already computed (`cache_features`),
    for a FeatureHead only. `weights`: the backbone's; FROM_PROFILE (default) = the profile's
    backbone (`weights_for`), None = random (tests).
    """
    device = pick_device(profile.device)
    size = profile.size
    torch.manual_seed(seed)
    if device.type == "cuda":
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    gen = torch.Generator().manual_seed(seed)
    model = build_localizer(profile.localizer, profile.levels, profile.head_width, weights_for(profile, weights),
                            backbone_arch(profile)).to(device)

    if features is not None and not isinstance(model, FeatureHead):
        raise ConfigError(f"precomputed features fit a feature_head localiser, not {profile.localizer}")
    if features is not None:  # the images are not needed: only their count and the masks
        goods = np.zeros((len(features.good[0]) if features.good is not None else 0, 1, 1, 3), np.uint8)
        p_imgs = pairs.images
    else:
        goods = good_images(fit, size, progress)
        p_imgs = _pair_images(pairs, size)
    p_masks = _pair_masks(pairs, size)
    n_good = int(round(profile.batch_size * profile.good_fraction)) if len(goods) else 0
    n_def = max(1, profile.batch_size - n_good)
    steps = _schedule(profile, len(pairs), n_def)

    cached = isinstance(model, FeatureHead)
    if isinstance(model, FeatureHead):  # = cached; isinstance so that mypy narrows model
        if features is None:
            features = FeatureCache(
                _cache_features(model, goods, device, "features (good)", progress) if len(goods) else None,
                _cache_features(model, p_imgs, device, "features (pairs)", progress),
                source=(_good_keys(fit), pairs))
        f_good, f_pair = features.good, features.pairs
        head_layout(model, torch.channels_last)  # oneDNN's convolutions are faster channels-last
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.Adam(params, lr=profile.lr)
    elif isinstance(model, LiteUNet):
        enc = set(map(id, model.encoder_parameters()))
        rest = [p for p in model.parameters() if id(p) not in enc]
        opt = torch.optim.Adam([{"params": model.encoder_parameters(), "lr": profile.encoder_lr},
                                {"params": rest, "lr": profile.lr}])
    else:
        opt = torch.optim.Adam(model.parameters(), lr=profile.lr)
    sched = torch.optim.lr_scheduler.MultiStepLR(
        opt, [max(1, int(steps * m)) for m in profile.lr_milestones], gamma=profile.lr_gamma)

    masks_t = torch.from_numpy(p_masks)  # uint8 (N, S, S)
    model.train()
    bar = tqdm(range(steps), desc=f"train {profile.localizer}", disable=not progress, leave=False)
    for _ in bar:
        di = torch.randint(0, len(pairs), (n_def,), generator=gen)
        gi = torch.randint(0, len(goods), (n_good,), generator=gen) if n_good else None
        m = (masks_t[di].float() / 255.0)[:, None]
        if gi is not None:
            m = torch.cat([m, torch.zeros((n_good, 1, size, size))])
        if cached:
            feats = [f[di] if gi is None else torch.cat([f[di], g[gi]]) for f, g in
                     zip(f_pair, f_good if f_good is not None else f_pair, strict=False)]
            grid = feats[0].shape[-2:]
            if profile.augment:  # lossless flips/rotations applied to feature maps and mask alike
                state = gen.get_state()
                out = []
                for f in feats:
                    gen.set_state(state)
                    out.append(flip_rotate(f, None, gen)[0])
                gen.set_state(state)
                _, m = flip_rotate(torch.zeros(len(m), 1, 1, 1), m, gen)
                feats = out
            # soft coverage on the feature grid (the stub wants a 2-tuple; a torch.Size works)
            target = F.adaptive_avg_pool2d(m, grid)  # type: ignore[arg-type]
            assert isinstance(model, FeatureHead)  # cached
            logits = model.head([f.to(device).contiguous(memory_format=torch.channels_last) for f in feats])
            loss = seg_loss(profile.loss, logits, target.to(device), profile.focal_gamma)
        else:
            x = to_tensor(p_imgs[di.numpy()])
            if gi is not None:
                x = torch.cat([x, to_tensor(goods[gi.numpy()])])
            if profile.augment:
                x, m = flip_rotate(x, m, gen)
            logits = model(x.to(device))
            loss = seg_loss(profile.loss, logits, m.to(device), profile.focal_gamma)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
    model.eval()
    if isinstance(model, FeatureHead):
        head_layout(model, torch.contiguous_format)  # saved and exported in the standard layout
    return Localizer(model, profile.localizer, size, device, batch_size=profile.batch_size, tta=profile.tta,
                     features=features if cached else None)
