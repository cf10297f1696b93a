"""The whole trained inspection model as one traceable torch module (what `export-model` writes to ONNX).

`InspectionGraph(image, cls_image) -> (score, map, probs)` computes exactly what the Python path
computes (`Localizer` / `FusedLocalizer.predict`, `image_scores_from_maps`, `DefectClassifier`):
the supervised logits (flip-averaged with `tta`), PatchCore's nearest-neighbour distances written as
a matrix product and a min over the bank, its bilinear upsampling and the Gaussian smoothing
(scipy's `gaussian_filter`, mode "reflect", truncate 4, as a separable convolution with the same
mirrored border), the standardisation and squash of a fused map, the image score (max of the
pool x pool window means) and the classifier's softmax (a region classifier, `inspect.region_classify`,
reads the image and the map, not `cls_image`; an ensemble, `inspect.ensemble_classify`, averages
the softmax of the CNN on `cls_image` and of the region classifier). Inputs are float RGB in [0, 1], (N, 3, S, S)
at the model size and (N, 3, C, C) at the classifier size (both resized outside the graph, as
`anomalyforge.deploy` does for either runtime).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from anomalyforge.errors import ConfigError
from anomalyforge.inspect.classify import DefectClassifier
from anomalyforge.inspect.ensemble_classify import EnsembleDefectClassifier, EnsembleNet
from anomalyforge.inspect.models import FeatureHead
from anomalyforge.inspect.patchcore import PatchCore
from anomalyforge.inspect.region_classify import RegionDefectClassifier
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
    """PatchCore's map. The nearest-neighbour search is ONE matrix product and a min: with the bank B
    (M, D) stored as [-2 B^T; |b|^2] (D + 1, M) and each patch q as [q, 1], q'B' = |b|^2 - 2 q.b, so
    |q - b|^2 = |q|^2 + min_b (q'B') without any (patches x M) element-wise pass (speed: those passes
    cost a third of the search)."""

    bank_aug: torch.Tensor  # buffer registered in __init__

    def __init__(self, pc: PatchCore, size: int) -> None:
        super().__init__()
        assert pc.bank is not None
        self.extractor = pc.extractor
        self.shapes = _shapes(pc.extractor, size)
        self.grid = self.shapes[0]
        bank = pc.bank.float().cpu()
        self.register_buffer("bank_aug", torch.cat([-2.0 * bank.t(), (bank * bank).sum(1)[None]]).contiguous())
        self.size = size
        self.blur = _Blur(pc.sigma, size) if pc.sigma else None

    def forward(self, x: torch.Tensor, feats: list[torch.Tensor] | None = None) -> torch.Tensor:
        """(N, 3, S, S) -> (N, S, S); `feats`: the extractor's outputs for `x` when already computed."""
        feats = self.extractor(x) if feats is None else feats
        grid = self.grid
        fs = []
        for f, shape in zip(feats, self.shapes, strict=True):
            f = F.avg_pool2d(f, 3, stride=1, padding=1)
            if shape != grid:
                f = F.interpolate(f, size=grid, mode="bilinear", align_corners=False)
            fs.append(f)
        f = torch.cat(fs, 1)
        d = int(self.bank_aug.shape[0]) - 1
        q = f.permute(0, 2, 3, 1).reshape(-1, d)
        near = (torch.cat([q, torch.ones_like(q[:, :1])], 1) @ self.bank_aug).min(1).values
        dist = torch.sqrt(torch.clamp((q * q).sum(1) + near, min=0.0))
        m = F.interpolate(dist.reshape(-1, 1, grid[0], grid[1]), size=(self.size, self.size), mode="bilinear",
                          align_corners=False)
        if self.blur is not None:
            m = self.blur(m)
        return m[:, 0]


def _shapes(extractor: nn.Module, size: int) -> list[tuple[int, int]]:
    """The (h, w) of each feature level at input size `size` (constants of the traced graph)."""
    with torch.no_grad():
        dev = next(extractor.parameters()).device
        return [(int(f.shape[-2]), int(f.shape[-1])) for f in extractor(torch.zeros(1, 3, size, size, device=dev))]


def _head(model: FeatureHead, x: torch.Tensor, shapes: list[tuple[int, int]], size: int,
          feats: list[torch.Tensor] | None = None) -> torch.Tensor:
    """`FeatureHead.forward` with every resampling size a constant (adaptive pooling as average pooling);
    `feats`: the extractor's outputs for `x` when already computed."""
    feats = [f.float() for f in (model.features(x) if feats is None else feats)]
    fine = shapes[0]
    k = model.body_stride // model.strides[0]
    body = (fine[0] // k, fine[1] // k)
    zs = []
    for f, shape in zip(feats, shapes, strict=True):
        if shape[0] > body[0]:
            if shape[0] % body[0] or shape[1] % body[1]:
                raise ConfigError(f"model size {size}: feature grid {shape} does not pool evenly to {body}; "
                                  "export needs a size divisible by 32")
            f = F.avg_pool2d(f, (shape[0] // body[0], shape[1] // body[1]))
        elif shape[0] < body[0]:
            f = F.interpolate(f, size=body, mode="bilinear", align_corners=False)
        zs.append(f)
    h = model.body(torch.cat(zs, 1))
    h = F.interpolate(h, size=fine, mode="bilinear", align_corners=False)
    out = model.refine(torch.cat([h, model.fine(feats[0])], 1))
    return F.interpolate(out, size=(size, size), mode="bilinear", align_corners=False)


class _Supervised(nn.Module):
    """A `Localizer`'s logits (flip-averaged with `tta`)."""

    def __init__(self, loc: Localizer) -> None:
        super().__init__()
        self.model = loc.model
        self.tta = loc.tta
        self.size = loc.size
        self.shapes = _shapes(loc.model.extractor, loc.size) if isinstance(loc.model, FeatureHead) else []

    def _one(self, x: torch.Tensor, feats: list[torch.Tensor] | None = None) -> torch.Tensor:
        if isinstance(self.model, FeatureHead):
            return _head(self.model, x, self.shapes, self.size, feats)
        return self.model(x)

    def forward(self, x: torch.Tensor, feats: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Logits (N, S, S); `feats`: the FeatureHead extractor's outputs for `x` when already computed."""
        if not self.tta:
            return self._one(x, feats)[:, 0]
        out = self._one(x, feats)
        for d in ((-1,), (-2,), (-2, -1)):
            out = out + self._one(x.flip(d)).flip(d)
        return (out / 4.0)[:, 0]


class InspectionGraph(nn.Module):
    """image (N, 3, S, S), cls_image (N, 3, C, C) in [0, 1] -> score (N,), map (N, S, S), probs (N, K)."""

    def __init__(self, localizer: MapPredictor,
                 classifier: DefectClassifier | RegionDefectClassifier | EnsembleDefectClassifier | None,
                 pool: int) -> None:
        super().__init__()
        self.fused = isinstance(localizer, FusedLocalizer)
        if isinstance(localizer, FusedLocalizer):
            sup = localizer.supervised
            self.pc = _PatchCoreMap(localizer.patchcore, localizer.size)
            self.weight = float(localizer.weight)
            self.sup_stats = tuple(float(v) for v in localizer.sup_stats)
            self.pc_stats = tuple(float(v) for v in localizer.pc_stats)
        else:
            assert isinstance(localizer, Localizer)
            sup = localizer
        self.sup = _Supervised(sup)
        self.size = sup.size
        self.shared = self._shared_levels(sup, localizer) if self.fused else None
        self.classifier = classifier.model if classifier is not None else None
        self.on_map = isinstance(classifier, RegionDefectClassifier)  # the image and its map, not cls_image
        self.ensemble = isinstance(classifier, EnsembleDefectClassifier)  # cls_image, the image and its map
        self.n_classes = len(classifier.labels) if classifier is not None else 0
        self.pool = int(pool)

    @staticmethod
    def _shared_levels(sup: Localizer, fused: MapPredictor) -> list[int] | None:
        """Where PatchCore's levels lie among the supervised extractor's outputs, when both extractors
        are the same frozen backbone with equal weights (then the graph runs it once, not twice);
        None otherwise."""
        assert isinstance(fused, FusedLocalizer)
        if not isinstance(sup.model, FeatureHead):
            return None
        a, b = sup.model.extractor, fused.patchcore.extractor
        sa, sb = a.state_dict(), b.state_dict()
        if (type(a) is not type(b) or getattr(a, "spec", None) is None or a.spec.name != b.spec.name
                or sa.keys() != sb.keys() or not all(torch.equal(sa[k], sb[k]) for k in sa)
                or not set(b.spec.levels) <= set(a.spec.levels)):
            return None
        return [list(a.spec.levels).index(lv) for lv in b.spec.levels]

    def forward(self, image: torch.Tensor, cls_image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        feats = None
        if self.shared is not None:
            model = self.sup.model
            assert isinstance(model, FeatureHead)  # _shared_levels checked it
            feats = model.extractor(image)
        z = self.sup(image, feats)
        if self.fused:
            zs = (z - self.sup_stats[0]) / self.sup_stats[1]
            pc_feats = [feats[i] for i in self.shared] if feats is not None and self.shared is not None else None
            zp = (self.pc(image, pc_feats) - self.pc_stats[0]) / self.pc_stats[1]
            s = (1.0 - self.weight) * zs + self.weight * zp
            m = 0.5 + 0.5 * s / (1.0 + torch.abs(s))
        else:
            m = torch.sigmoid(z)
        k = min(self.pool, self.size)
        score = F.avg_pool2d(m[:, None], k, stride=1).flatten(1).max(1).values
        if self.classifier is not None and self.ensemble:
            assert isinstance(self.classifier, EnsembleNet)
            probs = self.classifier.probs(cls_image, image, m)
        elif self.classifier is not None and self.on_map:
            probs = torch.softmax(self.classifier(image, m), 1)
        elif self.classifier is not None:
            probs = torch.softmax(self.classifier(cls_image), 1)
        else:
            probs = torch.zeros((image.shape[0], 0), dtype=image.dtype, device=image.device)
        return score, m, probs
