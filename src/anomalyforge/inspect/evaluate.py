"""The one place where the real test split is read and scored.

`TestSet.load` reads the test defects (with masks) and test good images of a split; the
benchmark calls it only after a model is trained. `localization_metrics` and
`classification_metrics` turn predictions into the results.json entries (raw floats in [0, 1]).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from anomalyforge import metrics as M
from anomalyforge.data.io import read_image, read_mask
from anomalyforge.data.types import FewShotSplit


@dataclass
class TestSet:
    """Test images (N, S, S, 3) uint8, masks (N, S, S) uint8 {0, 1}, labels (1 = defect), types."""

    images: np.ndarray
    masks: np.ndarray
    labels: np.ndarray
    types: np.ndarray
    paths: np.ndarray

    @classmethod
    def load(cls, split: FewShotSplit, size: int, progress: bool = True) -> TestSet:
        """Read the split's test defects (every type) and test good images at `size`."""
        thr = getattr(split, "mask_threshold", 128)
        items = [s for t in sorted(split.test_defects) for s in split.test_defects[t]] + list(split.test_good)
        n = len(items)
        images = np.zeros((n, size, size, 3), np.uint8)
        masks = np.zeros((n, size, size), np.uint8)
        for i, s in enumerate(tqdm(items, desc="read test split", disable=not progress, leave=False)):
            images[i] = read_image(s.image, size)
            if s.label == "defect" and s.mask is not None:
                masks[i] = read_mask(s.mask, size, threshold=thr) > 0
        labels = np.array([1 if s.label == "defect" else 0 for s in items], np.int64)
        types = np.array([s.defect_type for s in items])
        paths = np.array([str(Path(s.image)) for s in items])
        return cls(images, masks, labels, types, paths)

    @property
    def defect_types(self) -> list[str]:
        return sorted(set(self.types[self.labels == 1].tolist()))


def _safe(fn, *args) -> float | None:
    """A metric value, or None when it is undefined on this data (e.g. no positive pixel)."""
    try:
        v = fn(*args)
    except M.MetricError:
        return None
    v = v[0] if isinstance(v, tuple) else v
    return None if v is None or not np.isfinite(v) else float(v)


def localization_metrics(test: TestSet, maps: np.ndarray, image_scores: np.ndarray,
                         progress: bool = True) -> dict:
    """Pixel (AUROC, AP, F1-max, AUPRO@0.3) and image (AUROC, AP, F1-max) metrics, plus per type.

    Per type: that type's test images together with the test good images."""
    maps = np.asarray(maps, np.float32)
    bar = tqdm(total=3 + len(test.defect_types), desc="metrics", disable=not progress, leave=False)
    px, gt = maps.ravel(), test.masks.ravel()
    pixel = {"auroc": _safe(M.auroc, px, gt), "ap": _safe(M.average_precision, px, gt),
             "f1_max": _safe(M.f1_max, px, gt)}
    bar.update()
    pixel["aupro"] = _safe(lambda a, b: M.aupro(a, b, fpr_limit=0.3), maps, test.masks)
    bar.update()
    image = {"auroc": _safe(M.auroc, image_scores, test.labels),
             "ap": _safe(M.average_precision, image_scores, test.labels),
             "f1_max": _safe(M.f1_max, image_scores, test.labels)}
    bar.update()
    per_type = {}
    good = test.labels == 0
    for t in test.defect_types:
        sel = good | (test.types == t)
        pm, pg = maps[sel].ravel(), test.masks[sel].ravel()
        per_type[t] = {"pixel_auroc": _safe(M.auroc, pm, pg), "pixel_ap": _safe(M.average_precision, pm, pg),
                       "image_auroc": _safe(M.auroc, image_scores[sel], test.labels[sel])}
        bar.update()
    bar.close()
    return {"pixel": pixel, "image": image, "per_type": per_type}


def classification_metrics(pred: list[str], true: list[str], labels: list[str]) -> dict:
    """Accuracy overall and per true type, and the confusion matrix (rows true, columns predicted)."""
    idx = {t: i for i, t in enumerate(labels)}
    conf = np.zeros((len(labels), len(labels)), np.int64)
    for p, t in zip(pred, true, strict=False):
        conf[idx[t], idx[p]] += 1
    return {"accuracy": M.accuracy(pred, true), "per_type": M.per_class_accuracy(pred, true),
            "labels": list(labels), "confusion": conf.tolist()}


def decision_metrics(test: TestSet, maps: np.ndarray, image_scores: np.ndarray, image_threshold: float,
                     pixel_threshold: float) -> dict:
    """The verdicts at fixed thresholds (chosen on training data): image accuracy, false-alarm rate on
    the test good images, miss rate on the test defects (verdict "defect" when score > image
    threshold), and pixel precision / recall / F1 of the masks (map > pixel threshold) pooled over
    every test image."""
    flag = np.asarray(image_scores, np.float64) > image_threshold
    lab = test.labels == 1
    tp = fp = fn = 0
    for m, g in zip(maps, test.masks, strict=True):
        pred, gt = m > pixel_threshold, g > 0
        tp += int(np.sum(pred & gt))
        fp += int(np.sum(pred & ~gt))
        fn += int(np.sum(~pred & gt))
    prec = tp / (tp + fp) if tp + fp else None
    rec = tp / (tp + fn) if tp + fn else None
    return {"image_threshold": float(image_threshold), "pixel_threshold": float(pixel_threshold),
            "image_accuracy": float(np.mean(flag == lab)) if len(lab) else None,
            "false_alarm_rate": float(np.mean(flag[~lab])) if (~lab).any() else None,
            "miss_rate": float(np.mean(~flag[lab])) if lab.any() else None,
            "n_good": int((~lab).sum()), "n_defect": int(lab.sum()),
            "pixel_precision": prec, "pixel_recall": rec,
            "pixel_f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None}
