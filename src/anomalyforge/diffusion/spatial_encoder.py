"""The spatial encoder E of AnomalyDiffusion: a mask -> n text-embedding tokens (e_s = E(m)).

ResNet + Feature Pyramid Network (torchvision), then one head per output token on the finest
pyramid level (stride 4): two stride-2 3×3 convolutions (LeakyReLU), an average pool to a fixed
`grid`×`grid` map and one fully-connected layer from the flattened map to the token. Flattening
the map (not pooling it to a vector) keeps *where* the mask is in every token. This follows the
official code's pSp GradualStyleEncoder (per-token strided convolutions on the finest level) and
the paper's "ResNet-50 + FPN + one FC per token"; the official blocks stride down to 1×1 with
more convolutions, ours stop at a 4×4 grid so any input size works with two convolutions.
The paper uses ResNet-50; `backbone` also takes other torchvision ResNets and "tiny" (a
four-stage conv stack, for tests). Pretrained weights are optional (`weights=None` offline;
"DEFAULT" or a local .pth file otherwise). One encoder is shared by all defect types.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from anomalyforge.errors import ConfigError

RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "wide_resnet50_2")


class _TinyStages(nn.Module):
    """A stride-2 stem and four stride-2 conv stages (strides 4..32) with `width`..8*`width` channels."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        chans = [width, width * 2, width * 4, width * 8]
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 2, 1), nn.ReLU(inplace=True))
        layers, cin = [], width
        for c in chans:
            layers.append(nn.Sequential(nn.Conv2d(cin, c, 3, 2, 1),
                                        nn.GroupNorm(1, c), nn.ReLU(inplace=True)))
            cin = c
        self.layers = nn.ModuleList(layers)
        self.out_channels = chans

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        x = self.stem(x)
        out: OrderedDict[str, torch.Tensor] = OrderedDict()
        for i, layer in enumerate(self.layers):
            x = layer(x)
            out[str(i)] = x
        return out


class _ResNetStages(nn.Module):
    """layer1..layer4 of a torchvision ResNet."""

    def __init__(self, name: str, weights: str | None) -> None:
        super().__init__()
        import torchvision  # lazy: torchvision is heavy to import

        if weights in (None, "", "none"):
            net = torchvision.models.get_model(name, weights=None)
        elif Path(str(weights)).is_file():
            net = torchvision.models.get_model(name, weights=None)
            state = torch.load(str(weights), map_location="cpu", weights_only=True)
            try:
                net.load_state_dict(state)
            except RuntimeError as exc:
                raise ConfigError(f"{weights}: not {name} weights ({str(exc).splitlines()[0]})") from None
        else:
            try:
                net = torchvision.models.get_model(name, weights=weights)
            except Exception as exc:  # noqa: BLE001 - offline / unknown weight names
                raise ConfigError(f"spatial encoder weights {weights!r} for {name} unavailable "
                                  f"({exc.__class__.__name__}); pass a local .pth file or none") from None
        from torchvision.models._utils import IntermediateLayerGetter  # lazy: torchvision is heavy to import

        self.body = IntermediateLayerGetter(net, {f"layer{i}": str(i - 1) for i in range(1, 5)})
        probe = self.body(torch.zeros(1, 3, 64, 64))
        self.out_channels = [v.shape[1] for v in probe.values()]

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        return self.body(x)


class TokenHead(nn.Module):
    """One token from a (B, C, H, W) map: stride-2 convs, pool to grid×grid, flatten, linear."""

    def __init__(self, channels: int, dim: int, grid: int = 4, n_down: int = 2) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(n_down):
            layers += [nn.Conv2d(channels, channels, 3, 2, 1), nn.LeakyReLU(0.2)]
        self.convs = nn.Sequential(*layers)
        self.grid = grid
        self.fc = nn.Linear(channels * grid * grid, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.nn.functional.adaptive_avg_pool2d(self.convs(x), self.grid)
        return self.fc(x.flatten(1))


class SpatialEncoder(nn.Module):
    """Mask (B, 1, H, W) in {0, 1} -> spatial embedding (B, n_tokens, dim)."""

    def __init__(self, n_tokens: int = 4, dim: int = 768, backbone: str = "resnet50",
                 weights: str | None = None, fpn_channels: int = 256, grid: int = 4) -> None:
        super().__init__()
        from torchvision.ops import FeaturePyramidNetwork  # lazy: torchvision is heavy to import

        if backbone == "tiny":
            self.body: nn.Module = _TinyStages()
        elif backbone in RESNETS:
            self.body = _ResNetStages(backbone, weights)
        else:
            raise ConfigError(f"unknown spatial encoder backbone {backbone!r}; choose tiny or one of "
                              f"{', '.join(RESNETS)}")
        self.fpn = FeaturePyramidNetwork(list(self.body.out_channels), fpn_channels)
        self.heads = nn.ModuleList(TokenHead(fpn_channels, dim, grid) for _ in range(n_tokens))
        self.n_tokens = n_tokens
        self.dim = dim

    def forward(self, mask: torch.Tensor) -> torch.Tensor:
        x = mask.float() * 2 - 1
        x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
        finest = next(iter(self.fpn(self.body(x)).values()))  # stride 4
        return torch.stack([h(finest) for h in self.heads], dim=1)
