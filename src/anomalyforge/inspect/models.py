"""Localisation models predicting a per-pixel defect logit map.

- `FeatureHead`: a small conv head on frozen multi-scale EfficientNet-Lite features (fast on CPU;
  features can be cached because the backbone never changes).
- `LiteUNet`: a U-Net whose encoder is the pretrained EfficientNet-Lite0, fine-tuned.
- `DraemUNet`: DRAEM's discriminative U-Net trained from scratch (the papers' downstream model).

All take (B, 3, H, W) float RGB in [0, 1] and return (B, 1, H, W) logits at the input size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from anomalyforge.errors import ConfigError
from anomalyforge.features.backbone import DEFAULT_ARCH, BackboneSpec, FeatureExtractor, frozen_extractor


def _conv_bn_relu(cin: int, cout: int, k: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class FeatureHead(nn.Module):
    """Light conv head on frozen pretrained features of several stride levels.

    The levels are resampled to the stride-8 grid (pooling finer ones, upsampling coarser ones)
    and concatenated; a 1x1 + 3x3 conv body predicts there (cheap on CPU), then a 3x3 refinement
    on the finest level's grid (stride 4 by default) sharpens the boundaries. `head(feats)` runs
    on precomputed features (the training loop caches them); `forward(x)` runs end to end.
    """

    def __init__(self, levels: tuple[int, ...] = (1, 2, 3), width: int = 64,
                 backbone: BackboneSpec | None = None) -> None:
        super().__init__()
        spec = backbone or BackboneSpec(levels=tuple(levels))
        self.extractor = frozen_extractor(spec)
        chans = self.extractor.channels
        self.strides = self.extractor.strides
        self.body_stride = max(min(self.strides), min(8, max(self.strides)))
        w, r = width, max(8, width // 4)
        self.body = nn.Sequential(_conv_bn_relu(sum(chans), w, 1), _conv_bn_relu(w, w // 2))
        self.fine = _conv_bn_relu(chans[0], r, 1)
        self.refine = nn.Sequential(_conv_bn_relu(w // 2 + r, r), nn.Conv2d(r, 1, 1))

    def train(self, mode: bool = True) -> FeatureHead:
        super().train(mode)
        self.extractor.eval()  # frozen: BatchNorm statistics stay ImageNet's
        return self

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        with torch.no_grad():
            return self.extractor(x)

    def head(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """Logits on the finest feature grid from precomputed features."""
        feats = [f.float() for f in feats]
        fine_size = feats[0].shape[-2:]
        k = self.body_stride // self.strides[0]
        size = (fine_size[0] // k, fine_size[1] // k)
        zs = []
        for f in feats:
            if f.shape[-2] > size[0]:
                f = F.adaptive_avg_pool2d(f, size)
            elif f.shape[-2] < size[0]:
                f = F.interpolate(f, size=size, mode="bilinear", align_corners=False)
            zs.append(f)
        h = self.body(torch.cat(zs, 1))
        h = F.interpolate(h, size=fine_size, mode="bilinear", align_corners=False)
        return self.refine(torch.cat([h, self.fine(feats[0])], 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.head(self.features(x))
        return F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)


def head_layout(model: FeatureHead, layout: torch.memory_format) -> None:
    """Put the trained head's weights (not the frozen extractor's) in memory `layout`, in place."""
    for part in (model.body, model.fine, model.refine):
        part.to(memory_format=layout)


class _Up(nn.Module):
    def __init__(self, cin: int, cskip: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(_conv_bn_relu(cin + cskip, cout), _conv_bn_relu(cout, cout))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.conv(torch.cat([x, skip], 1))


class LiteUNet(nn.Module):
    """U-Net with the pretrained EfficientNet-Lite0 as encoder (levels 0..4) and a light decoder."""

    def __init__(self, width: int = 32, weights: str | None = "imagenet") -> None:
        super().__init__()
        self.encoder = FeatureExtractor(BackboneSpec(levels=(0, 1, 2, 3, 4), weights=weights))
        c = self.encoder.channels  # 16, 24, 40, 112, 320
        w = width
        self.up3 = _Up(c[4], c[3], 4 * w)
        self.up2 = _Up(4 * w, c[2], 2 * w)
        self.up1 = _Up(2 * w, c[1], w)
        self.up0 = _Up(w, c[0], w)
        self.out = nn.Conv2d(w, 1, 1)

    def encoder_parameters(self) -> list[nn.Parameter]:
        return list(self.encoder.parameters())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f0, f1, f2, f3, f4 = self.encoder(x)
        h = self.up0(self.up1(self.up2(self.up3(f4, f3), f2), f1), f0)
        return F.interpolate(self.out(h), size=x.shape[-2:], mode="bilinear", align_corners=False)


class DraemUNet(nn.Module):
    """DRAEM's discriminative sub-network (Zavrtanik et al., ICCV 2021), trained from scratch.

    Six encoder stages of two conv-BN-ReLU layers (base, 2b, 4b, 8b, 8b, 8b channels) with max
    pooling, a mirrored decoder with skip connections, and a 1-channel logit output.
    The papers feed it the image only (no reconstruction) when it is the downstream model.
    """

    def __init__(self, in_channels: int = 3, base: int = 64) -> None:
        super().__init__()
        b = base
        widths = [b, 2 * b, 4 * b, 8 * b, 8 * b, 8 * b]
        self.enc = nn.ModuleList()
        cin = in_channels
        for w in widths:
            self.enc.append(nn.Sequential(_conv_bn_relu(cin, w), _conv_bn_relu(w, w)))
            cin = w
        self.dec = nn.ModuleList()
        for i in range(len(widths) - 1, 0, -1):
            self.dec.append(_Up(widths[i], widths[i - 1], widths[i - 1]))
        self.out = nn.Conv2d(b, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        h = x
        for i, stage in enumerate(self.enc):
            if i:
                h = F.max_pool2d(h, 2)
            h = stage(h)
            skips.append(h)
        for up, skip in zip(self.dec, reversed(skips[:-1]), strict=False):
            h = up(h, skip)
        return self.out(h)


def build_localizer(name: str, levels: tuple[int, ...] = (1, 2, 3), width: int = 96,
                    weights: str | None = "imagenet", arch: str = DEFAULT_ARCH) -> nn.Module:
    """Build a localisation model by name (feature_head, lite_unet, draem_unet); `arch` is the
    feature head's backbone (lite_unet's encoder is EfficientNet-Lite0; draem_unet has none)."""

    if name == "feature_head":
        return FeatureHead(tuple(levels), width, BackboneSpec(arch, weights, tuple(levels)))
    if name == "lite_unet" and arch != DEFAULT_ARCH:
        raise ConfigError(f"lite_unet's encoder is {DEFAULT_ARCH}, not a {arch} backbone; "
                          "use localizer=feature_head")
    if name == "lite_unet":
        return LiteUNet(max(8, width // 3), weights)
    if name == "draem_unet":
        return DraemUNet(3, 64 if width >= 64 else max(4, width // 2))  # paper: 64
    raise ConfigError(f"unknown localisation model {name!r}; available: feature_head, lite_unet, draem_unet")
