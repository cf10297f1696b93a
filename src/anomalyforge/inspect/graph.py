"""The whole trained inspection model as one traceable torch module (what `export-model` writes to ONNX).

`InspectionGraph(image, cls_image) -> (score, map, probs)` computes exactly what the Python path
computes (`Localizer` / `FusedLocalizer.predict`, `image_scores_from_maps`, `DefectClassifier`):
the supervised logits (flip-averaged with `tta`), PatchCore's nearest-neighbour distances written as
a matrix product and a min over the bank, its bilinear upsampling and the Gaussian smoothing
(scipy's `gaussian_filter`, mode "reflect", truncate 4, as a separable convolution with the same
mirrored border), the standardisation and squash of a fused map, the image score (max of the
pool x pool window means) and the classifier's softmax. Inputs are float RGB in [0, 1], (N, 3, S, S)
at the model size and (N, 3, C, C) at the classifier size (both resized outside the graph, as
`anomalyforge.deploy` does for either runtime).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from anomalyforge.inspect.classify import DefectClassifier
from anomalyforge.inspect.patchcore import PatchCore
from anomalyforge.inspect.train import FusedLocalizer, Localizer, MapPredictor


def gaussian_kernel(sigma: float, truncate: float = 4.0) -> np.ndarray:
    """scipy.ndimage's 1-D Gaussian weights (radius int(truncate * sigma + 0.5))."""
    r = int(truncate * float(sigma) + 0.5)
    x = np.arange(-r, r + 1, dtype=np.float64)
    w = np.exp(-0.5 * (x / sigma) ** 2)
    return (w / w.sum()).astype(np.float32)


def _mirror_index(n: int, r: int) -> torch.Tensor:
    """Indices of a length-n axis padded by r on both sides, scipy "reflect" (= numpy "symmetric")."""
    return torch.from_numpy(np.pad(np.arange(n), r, mode="symmetric").astype(np.int64))


class _Blur(nn.Module):
    kh: torch.Tensor  # buffers registered in __init__
    kw: torch.Tensor
    idx: torch.Tensor

    def __init__(self, sigma: float, size: int) -> None:
        super().__init__()
        k = torch.from_numpy(gaussian_kernel(sigma))
        self.r = (len(k) - 1) // 2
        self.register_buffer("kh", k.view(1, 1, -1, 1))
        self.register_buffer("kw", k.view(1, 1, 1, -1))
        self.register_buffer("idx", _mirror_index(size, self.r))

    def forward(self, m: torch.Tensor) -> torch.Tensor:  # (N, 1, S, S)
        m = F.conv2d(torch.index_select(m, 2, self.idx), self.kh)
        return F.conv2d(torch.index_select(m, 3, self.idx), self.kw)


class _PatchCoreMap(nn.Module):
    bank_t: torch.Tensor  # buffers registered in __init__
    bank_sq: torch.Tensor

    def __init__(self, pc: PatchCore, size: int) -> None:
        super().__init__()
        assert pc.bank is not None
        self.extractor = pc.extractor
        bank = pc.bank.float().cpu()
        self.register_buffer("bank_t", bank.t().contiguous())
        self.register_buffer("bank_sq", (bank * bank).sum(1)[None])
        self.size = size
        self.blur = _Blur(pc.sigma, size) if pc.sigma else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, 3, S, S) -> (N, S, S)
        feats = self.extractor(x)
        grid = feats[0].shape[-2:]
        fs = []
        for f in feats:
            f = F.avg_pool2d(f, 3, stride=1, padding=1)
            if f.shape[-2:] != grid:
                f = F.interpolate(f, size=grid, mode="bilinear", align_corners=False)
            fs.append(f)
        f = torch.cat(fs, 1)
        b, d, h, w = f.shape
        q = f.permute(0, 2, 3, 1).reshape(-1, d)
        d2 = (q * q).sum(1, keepdim=True) - 2.0 * (q @ self.bank_t) + self.bank_sq
        dist = torch.sqrt(torch.clamp(d2.min(1).values, min=0.0))
        m = F.interpolate(dist.view(b, 1, h, w), size=(self.size, self.size), mode="bilinear", align_corners=False)
        if self.blur is not None:
            m = self.blur(m)
        return m[:, 0]


def _logits(loc: Localizer, x: torch.Tensor) -> torch.Tensor:
    if not loc.tta:
        return loc.model(x)[:, 0]
    outs = [loc.model(x)]
    for d in ((-1,), (-2,), (-2, -1)):
        outs.append(loc.model(x.flip(d)).flip(d))
    return (sum(outs[1:], outs[0]) / 4.0)[:, 0]


class InspectionGraph(nn.Module):
    """image (N, 3, S, S), cls_image (N, 3, C, C) in [0, 1] -> score (N,), map (N, S, S), probs (N, K)."""

    def __init__(self, localizer: MapPredictor, classifier: DefectClassifier | None, pool: int) -> None:
        super().__init__()
        self.fused = isinstance(localizer, FusedLocalizer)
        if isinstance(localizer, FusedLocalizer):
            self.sup: Localizer = localizer.supervised
            self.pc = _PatchCoreMap(localizer.patchcore, localizer.size)
            self.weight = float(localizer.weight)
            self.sup_stats = tuple(float(v) for v in localizer.sup_stats)
            self.pc_stats = tuple(float(v) for v in localizer.pc_stats)
        else:
            assert isinstance(localizer, Localizer)
            self.sup = localizer
        self.sup_model = self.sup.model
        self.classifier = classifier.model if classifier is not None else None
        self.n_classes = len(classifier.labels) if classifier is not None else 0
        self.pool = int(pool)

    def forward(self, image: torch.Tensor, cls_image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        z = _logits(self.sup, image)
        if self.fused:
            zs = (z - self.sup_stats[0]) / self.sup_stats[1]
            zp = (self.pc(image) - self.pc_stats[0]) / self.pc_stats[1]
            s = (1.0 - self.weight) * zs + self.weight * zp
            m = 0.5 + 0.5 * s / (1.0 + torch.abs(s))
        else:
            m = torch.sigmoid(z)
        k = min(self.pool, m.shape[-1], m.shape[-2])
        score = F.avg_pool2d(m[:, None], k, stride=1).flatten(1).max(1).values
        if self.classifier is not None:
            probs = torch.softmax(self.classifier(cls_image), 1)
        else:
            probs = torch.zeros((image.shape[0], 0), dtype=image.dtype, device=image.device)
        return score, m, probs
