"""Accuracy of hard class predictions (e.g. defect-type classification), overall and per class."""

from __future__ import annotations

from typing import Any

import numpy as np

from anomalyforge.metrics.errors import MetricError


def _pair(pred: Any, true: Any) -> tuple[np.ndarray, np.ndarray]:
    p, t = np.asarray(pred), np.asarray(true)
    if p.shape != t.shape:
        raise MetricError(f"shape mismatch: pred {p.shape} vs true {t.shape}")
    if p.size == 0:
        raise MetricError("pred and true are empty")
    return p.ravel(), t.ravel()


def accuracy(pred: Any, true: Any) -> float:
    """Fraction of predictions equal to the truth (labels may be ints or strings)."""
    p, t = _pair(pred, true)
    return float(np.mean(p == t))


def per_class_accuracy(pred: Any, true: Any) -> dict:
    """Accuracy within each true class (= that class's recall), keyed by class, sorted.

    Classes that are only predicted, never true, have no entry (their accuracy is undefined).
    """
    p, t = _pair(pred, true)
    classes, inverse = np.unique(t, return_inverse=True)
    hits = np.bincount(inverse, weights=(p == t).astype(np.float64), minlength=classes.size)
    totals = np.bincount(inverse, minlength=classes.size)
    return {c.item(): float(h / n) for c, h, n in zip(classes, hits, totals, strict=False)}
