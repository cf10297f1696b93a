"""Defect-type classifier trained on generated pairs, evaluated on real test defects.

Default: the pretrained EfficientNet-Lite0 (offline weights) with a new linear head, fine-tuned.
`resnet34` (the papers' choice) uses torchvision's ImageNet weights, which need a download or a
local weights file; offline without them it stops with a clear error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from anomalyforge.errors import ConfigError
from anomalyforge.features.backbone import (
    DEFAULT_ARCH,
    IMAGENET_MEAN,
    IMAGENET_STD,
    BackboneSpec,
    FeatureExtractor,
    load_torchvision_model,
    pick_device,
    to_tensor,
)
from anomalyforge.features.folded import run_lite, use_folded
from anomalyforge.inspect.augment import flip_rotate
from anomalyforge.inspect.pairs import GeneratedPairs
from anomalyforge.inspect.profiles import FROM_PROFILE, Profile, classifier_arch, weights_for


class _StageClassifier(nn.Module):
    """A stage backbone (EfficientNet-Lite, or a TAB-pretrained ResNet) + new linear head. Stride
    levels below `finetune_from` stay frozen (their output can then be cached once per image); the
    later blocks and the head are trained."""

    def __init__(self, n_classes: int, weights: str | None, finetune_from: int = 0,
                 arch: str = DEFAULT_ARCH) -> None:
        super().__init__()
        self.features = FeatureExtractor(BackboneSpec(name=arch, weights=weights, levels=(4,)))
        self.finetune_from = finetune_from
        self.fc = nn.Linear(self.features.channels[0], n_classes)
        self._trunk: list[nn.Module] = []  # not registered: its parameters live in self.features
        if finetune_from > 0:
            trunk, top = self.features.net.split(finetune_from)
            for p in self.features.parameters():
                p.requires_grad_(False)
            self._trunk = trunk
            self.top = nn.ModuleList(top)
            for p in self.top.parameters():
                p.requires_grad_(True)

    def train(self, mode: bool = True) -> _StageClassifier:
        super().train(mode)
        # BatchNorm keeps its ImageNet statistics (small fine-tuning batches would make the
        # running averages lag behind, so train- and eval-mode outputs would disagree)
        self.features.eval()
        return self

    @torch.no_grad()
    def trunk_features(self, x: torch.Tensor) -> torch.Tensor:
        """Output of the frozen levels (input of the fine-tuned blocks)."""
        fx = self.features
        h = (x - fx.mean) / fx.std
        if use_folded(fx):  # frozen: BatchNorm folded, channels-last (features.folded)
            return run_lite(self._trunk, h)[-1]
        for m in self._trunk:
            h = m(h)
        return h

    def from_trunk(self, h: torch.Tensor) -> torch.Tensor:
        if use_folded(self):  # inference
            return self.fc(run_lite(self.top, h)[-1].mean((2, 3)))
        for b in self.top:
            h = b(h)
        return self.fc(h.mean((2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.finetune_from > 0:
            return self.from_trunk(self.trunk_features(x))
        return self.fc(self.features(x)[0].mean((2, 3)))


class _TorchvisionClassifier(nn.Module):
    mean: torch.Tensor  # buffers registered in __init__
    std: torch.Tensor

    def __init__(self, name: str, n_classes: int, weights: str | None) -> None:
        super().__init__()
        import torchvision  # lazy: torchvision is heavy to import

        net: Any = load_torchvision_model(getattr(torchvision.models, name), weights,  # torchvision is untyped
                                     f"classifier {name} (efficientnet-lite0 works offline)")
        net.fc = nn.Linear(net.fc.in_features, n_classes)
        self.net = net
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)


def build_classifier(name: str, n_classes: int, weights: str | None = "imagenet",
                     finetune_from: int = 0) -> nn.Module:
    """A pretrained backbone with a fresh linear head over `n_classes` defect types.

    `name`: efficientnet-lite0 (offline ImageNet weights) or resnet34 (torchvision's ImageNet
    weights); with a TAB backbone's `.safetensors` as `weights`, any architecture a TAB backbone
    has (efficientnet-lite*, resnet18, ...). `finetune_from`: first stride level that is fine-tuned
    (0 = all; the resnet34 of torchvision's weights is always fine-tuned whole)."""
    tab = weights is not None and weights.endswith(".safetensors")
    if name == "resnet34" and not tab:
        return _TorchvisionClassifier("resnet34", n_classes, None if weights is None else "DEFAULT")
    if name.startswith("efficientnet-lite") or name.startswith("resnet") or name.startswith("wide_resnet"):
        return _StageClassifier(n_classes, weights, finetune_from, name)
    raise ConfigError(f"unknown classifier {name!r}; available: efficientnet-lite0, resnet34")


def _resize(images: np.ndarray, size: int) -> np.ndarray:
    if images.shape[1] == size:
        return images
    return np.stack([cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA) for im in images])


@dataclass
class DefectClassifier:
    """A trained defect-type classifier; `labels[i]` is the type of output class i."""

    model: nn.Module
    labels: list[str]
    size: int
    device: torch.device
    batch_size: int = 16
    # the frozen trunk's output for the training images (pairs, then real), when it was cached:
    # retrainings on a subset (`inspect.classifier_choice`'s folds) reuse it; drop it after
    trunk: torch.Tensor | None = None
    needs_maps = False  # it looks at the whole image (`inspect.region_classify` looks at a map's region)

    @torch.no_grad()
    def predict(self, images: np.ndarray, maps: np.ndarray | None = None) -> list[str]:
        """(N, S, S, 3) uint8 -> predicted defect type per image (`maps` unused)."""
        self.model.eval()
        out: list[int] = []
        images = _resize(images, self.size)
        for i in range(0, len(images), self.batch_size):
            x = to_tensor(images[i:i + self.batch_size]).to(self.device)
            out.extend(self.model(x).argmax(1).cpu().tolist())
        return [self.labels[k] for k in out]

    @torch.no_grad()
    def predict_proba(self, images: np.ndarray, maps: np.ndarray | None = None) -> np.ndarray:
        """(N, S, S, 3) uint8 -> (N, len(labels)) float32 softmax probabilities (argmax = `predict`;
        `maps` unused)."""
        self.model.eval()
        out = [np.zeros((0, len(self.labels)), np.float32)]
        images = _resize(images, self.size)
        for i in range(0, len(images), self.batch_size):
            x = to_tensor(images[i:i + self.batch_size]).to(self.device)
            out.append(torch.softmax(self.model(x).float(), 1).cpu().numpy())
        return np.concatenate(out)


def train_classifier(pairs: GeneratedPairs, profile: Profile, seed: int = 0, progress: bool = True,
                     weights: str | None = FROM_PROFILE, real: GeneratedPairs | None = None,
                     real_share: float = 0.5, trunk: torch.Tensor | None = None) -> DefectClassifier:
    """Fine-tune the profile's classifier on generated pairs (class = defect type), fixed schedule.

    Batches are class-balanced (each sample draws a type uniformly, then a pair of that type).
    With `real` (the real few-shot defects), that pair comes from the real ones of the type with
    probability `real_share` (when the type has any), else from the generated ones. `trunk`: the
    frozen trunk's output for `pairs` then `real` (rows of an earlier classifier's `trunk` with the
    same weights), so it is not computed again."""
    if real is not None:
        if not 0.0 <= real_share <= 1.0:
            raise ConfigError(f"real_share must be in [0, 1], got {real_share}")
        n_generated = len(pairs)
        pairs = pairs + real
    labels = pairs.defect_types
    if len(labels) < 2:
        raise ConfigError("classification needs generated pairs of at least two defect types")
    device = pick_device(profile.device)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed + 1)
    model = build_classifier(classifier_arch(profile), len(labels), weights_for(profile, weights),
                             profile.cls_finetune_from).to(device)
    images = _resize(pairs.images, profile.cls_size)
    cached = getattr(model, "finetune_from", 0) > 0
    if cached and trunk is not None and len(trunk) != len(images):
        raise ConfigError(f"classifier: {len(trunk)} cached trunk features for {len(images)} images")
    if cached and trunk is None:  # the frozen trunk never changes: run it once per image
        model.eval()
        assert isinstance(model, _StageClassifier)  # only it has finetune_from
        trunk = torch.cat([model.trunk_features(to_tensor(images[i:i + 32]).to(device)).half().cpu()
                           for i in tqdm(range(0, len(images), 32), desc="classifier features",
                                         disable=not progress, leave=False)])
    y = np.array([labels.index(t) for t in pairs.types])
    by_class = [torch.from_numpy(np.flatnonzero(y == k)) for k in range(len(labels))]
    if real is not None:  # separate pools; a type missing from one pool draws from the other
        pos = np.arange(len(y))
        gen_pool = [torch.from_numpy(np.flatnonzero((y == k) & (pos < n_generated))) for k in range(len(labels))]
        real_pool = [torch.from_numpy(np.flatnonzero((y == k) & (pos >= n_generated))) for k in range(len(labels))]

    def draw(c: int) -> torch.Tensor:
        pool = by_class[c]
        if real is not None:
            use_real = bool(torch.rand((), generator=gen) < real_share)
            pool = real_pool[c] if (use_real and len(real_pool[c])) or not len(gen_pool[c]) else gen_pool[c]
        return pool[torch.randint(0, len(pool), (1,), generator=gen)][0]

    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=profile.cls_lr,
                            weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, profile.cls_steps))
    if cached:  # oneDNN's convolutions (and their backward) are faster channels-last
        assert isinstance(model, _StageClassifier)
        model.top.to(memory_format=torch.channels_last)
    model.train()
    bar = tqdm(range(profile.cls_steps), desc=f"train {profile.classifier}", disable=not progress, leave=False)
    for _ in bar:
        cls = torch.randint(0, len(labels), (profile.cls_batch_size,), generator=gen)
        idx = torch.stack([draw(int(c)) for c in cls])
        if cached:  # lossless flips / rotations of the cached trunk features
            assert isinstance(model, _StageClassifier) and trunk is not None  # only it has finetune_from
            x, _ = flip_rotate(trunk[idx].float(), None, gen)
            logits = model.from_trunk(x.to(device).contiguous(memory_format=torch.channels_last))
        else:
            x, _ = flip_rotate(to_tensor(images[idx.numpy()]), None, gen)
            logits = model(x.to(device))
        loss = F.cross_entropy(logits, cls.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    model.eval()
    if cached:  # saved and exported in the standard layout
        assert isinstance(model, _StageClassifier)
        model.top.to(memory_format=torch.contiguous_format)
    return DefectClassifier(model, labels, profile.cls_size, device, profile.cls_batch_size,
                            trunk if cached else None)
