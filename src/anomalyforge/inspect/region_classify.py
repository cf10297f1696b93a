"""Defect-type classifier of the region the localiser's MAP marks (`cls_input="region"`).

Why: a whole-image classifier spends most of its input on the good part of the image, and with a
handful of real defects per type it learns the part, not the defect. This one describes a defect
by the frozen backbone's stride-16 and stride-32 features averaged inside the region its map marks
(weights: how far each pixel lies above the map's 90th percentile), next to the whole-image
average, and classifies that descriptor with a logistic regression (scikit-learn's; its
standardisation folded into one linear layer, so the saved model and the ONNX graph are plain torch).

It learns from the real few-shot training defects, each described through the map of the k-fold
model that never saw it (`inspect.kfold.fold_maps`, the maps the pixel threshold is chosen on), so
it sees regions as the deployed localiser draws them, not as an annotator does.
`choose_classifier` decides between it and the fine-tuned whole-image classifier on those folds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from torch import nn

from anomalyforge.errors import ConfigError
from anomalyforge.features.backbone import BackboneSpec, frozen_extractor, pick_device, to_tensor

LEVELS = (3, 4)  # stride 16 and 32: defect-sized context
QUANTILE = 0.9  # the region: map values above this quantile of the image's map
C = 0.5  # inverse L2 strength of the logistic regression (class-balanced)


def region_weights(maps: torch.Tensor, quantile: float = QUANTILE) -> torch.Tensor:
    """(N, H, W) maps -> (N, 1, H, W) weights >= 0: how far each value lies above the image's
    `quantile` (the k-th largest value, k = (1 - quantile) of the pixels: exportable as ONNX TopK)."""
    flat = maps.flatten(1)
    n = int(maps.shape[-2]) * int(maps.shape[-1])  # a constant in a traced graph: the model size is fixed
    k = max(1, int(round((1.0 - quantile) * n)))
    thr = torch.topk(flat, k, dim=1).values[:, -1]
    return torch.clamp(maps - thr[:, None, None], min=0.0)[:, None]


class RegionClassifier(nn.Module):
    """(image (N, 3, S, S) in [0, 1], map (N, S, S)) -> logits (N, K): frozen features pooled in
    the map's region and over the whole image, L2-normalised per part, one linear layer."""

    def __init__(self, n_classes: int, weights: str | None, arch: str) -> None:
        super().__init__()
        self.extractor = frozen_extractor(BackboneSpec(arch, weights, LEVELS))
        dim = 2 * sum(self.extractor.channels)
        self.fc = nn.Linear(dim, n_classes)

    def train(self, mode: bool = True) -> RegionClassifier:
        super().train(mode)
        self.extractor.eval()
        return self

    def descriptor(self, x: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
        """(N, D) region + whole-image descriptor."""
        w_full = region_weights(maps)
        region, whole = [], []
        for f in self.extractor(x):
            h, wd = int(f.shape[-2]), int(f.shape[-1])  # constants in a traced graph
            side = int(w_full.shape[-1])
            if side % wd == 0 and int(w_full.shape[-2]) == side * h // wd:  # area resampling onto the grid
                w = F.avg_pool2d(w_full, side // wd)  # (an explicit kernel: exportable with dynamic shapes)
            else:
                w = F.adaptive_avg_pool2d(w_full, (h, wd))
            total = w.sum((2, 3), keepdim=True)
            uniform = torch.full_like(w, 1.0 / float(h * wd))
            w = torch.where(total > 0, w / total.clamp_min(1e-12), uniform)
            region.append((f * w).sum((2, 3)))
            whole.append(f.mean((2, 3)))
        return torch.cat([F.normalize(torch.cat(region, 1), dim=1), F.normalize(torch.cat(whole, 1), dim=1)], 1)

    def forward(self, x: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
        return self.fc(self.descriptor(x, maps))


@dataclass
class RegionDefectClassifier:
    """A trained region classifier; `labels[i]` is the type of output class i. Runs at the
    localiser's size `size`, on its maps."""

    model: RegionClassifier
    labels: list[str]
    size: int
    device: torch.device
    batch_size: int = 16
    needs_maps = True

    @torch.no_grad()
    def descriptors(self, images: np.ndarray, maps: np.ndarray) -> np.ndarray:
        self.model.eval()
        out = [np.zeros((0, self.model.fc.in_features), np.float32)]
        for i in range(0, len(images), self.batch_size):
            x = to_tensor(images[i:i + self.batch_size]).to(self.device)
            m = torch.from_numpy(np.ascontiguousarray(maps[i:i + self.batch_size], np.float32)).to(self.device)
            out.append(self.model.descriptor(x, m).cpu().numpy())
        return np.concatenate(out)

    @torch.no_grad()
    def predict_proba(self, images: np.ndarray, maps: np.ndarray | None = None) -> np.ndarray:
        """(N, S, S, 3) uint8 and their (N, S, S) maps -> (N, len(labels)) softmax probabilities."""
        _check(images, maps, self.size)
        assert maps is not None
        x = torch.from_numpy(self.descriptors(images, maps)).to(self.device)
        return torch.softmax(self.model.fc(x).float(), 1).cpu().numpy()

    def predict(self, images: np.ndarray, maps: np.ndarray | None = None) -> list[str]:
        """(N, S, S, 3) uint8 and their (N, S, S) maps -> predicted defect type per image."""
        return [self.labels[k] for k in self.predict_proba(images, maps).argmax(1)] if len(images) else []


def _check(images: np.ndarray, maps: np.ndarray | None, size: int) -> None:
    if maps is None:
        raise ConfigError("the region classifier needs the localiser's maps of the images")
    if images.shape[1:3] != (size, size) or maps.shape != images.shape[:3]:
        raise ConfigError(f"region classifier: images {images.shape} and maps {maps.shape} must be "
                          f"(N, {size}, {size}, 3) and (N, {size}, {size})")


def logistic_head(x: np.ndarray, y: list[str], labels: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Weights (K, D) and bias (K,) of a class-balanced logistic regression on standardised `x`,
    the standardisation folded in (logits = W x + b); class order `labels`."""
    if len(set(y)) < 2:
        raise ConfigError("the region classifier needs real defects of at least two types")
    scaler = StandardScaler().fit(x)
    clf = LogisticRegression(C=C, max_iter=3000, class_weight="balanced").fit(scaler.transform(x), y)
    coef, icpt = clf.coef_, clf.intercept_
    if coef.shape[0] == 1:  # binary: one logit for classes_[1]; class 0 gets logit 0
        coef, icpt = np.concatenate([np.zeros_like(coef), coef]), np.concatenate([[0.0], icpt])
    scale = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
    w = coef / scale
    b = icpt - w @ scaler.mean_
    out_w, out_b = np.zeros((len(labels), x.shape[1])), np.full(len(labels), -1e4)  # a type never seen: never chosen
    for i, c in enumerate(clf.classes_):
        out_w[labels.index(c)], out_b[labels.index(c)] = w[i], b[i]
    return out_w.astype(np.float32), out_b.astype(np.float32)


def fit_region_classifier(images: np.ndarray, maps: np.ndarray, types: list[str], labels: list[str],
                          weights: str | None, arch: str, device: str | None = None,
                          batch_size: int = 16) -> RegionDefectClassifier:
    """Fit on (N, S, S, 3) defect images described through their (N, S, S) maps, class order
    `labels` (a superset of `types`)."""
    dev = pick_device(device)
    model = RegionClassifier(len(labels), weights, arch).to(dev).eval()
    out = RegionDefectClassifier(model, list(labels), int(images.shape[1]), dev, batch_size)
    _check(images, maps, out.size)
    w, b = logistic_head(out.descriptors(images, maps), types, list(labels))
    with torch.no_grad():
        model.fc.weight.copy_(torch.from_numpy(w))
        model.fc.bias.copy_(torch.from_numpy(b))
    return out


__all__ = ["LEVELS", "QUANTILE", "RegionClassifier", "RegionDefectClassifier", "fit_region_classifier",
           "logistic_head", "region_weights"]
