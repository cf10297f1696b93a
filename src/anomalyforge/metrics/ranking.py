"""Threshold-free ranking metrics (AUROC, AP, best F1) and plot-ready ROC / PR curves.

All take ``scores`` (higher = more anomalous) and binary ``labels`` of the same, any, shape —
flattened, so the same functions serve image level and pixel level.  Definitions match
scikit-learn (``roc_auc_score``, ``average_precision_score``, ``precision_recall_curve``)
including ties, and are exact by default.  ``bins=`` switches to O(n) histogram mode for
very large inputs; see :func:`auroc` for its error bound.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from anomalyforge.metrics.checks import check_bins, required_bins, scores_and_labels
from anomalyforge.metrics.counts import Cumulative, cumulate
from anomalyforge.metrics.errors import MetricError


class RocCurve(NamedTuple):
    """False/true positive rates (from (0, 0) to (1, 1)) at decreasing thresholds."""

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray  # thresholds[0] = +inf for the (0, 0) start


class PrCurve(NamedTuple):
    """Precision and recall at decreasing thresholds (recall rising to 1)."""

    precision: np.ndarray
    recall: np.ndarray
    thresholds: np.ndarray


def _counts(scores: Any, labels: Any, bins: int | None) -> Cumulative:
    s, y = scores_and_labels(scores, labels)
    return cumulate(s[y], s[~y], bins=check_bins(bins))


def auroc(scores: Any, labels: Any, bins: int | None = None) -> float:
    """Area under the ROC curve (ties count 1/2, as ``sklearn.metrics.roc_auc_score``).

    With ``bins`` the result is the exact AUROC of the bin-quantised scores.  It differs from
    the exact value only through positive/negative pairs sharing a bin:
    ``|binned - exact| <= 0.5 * sum_b P_b * N_b / (P * N)`` (P_b, N_b = positives/negatives in
    bin b), at most half the largest fraction of negatives in one bin; see
    :func:`binned_error_bound`.
    """
    c = _counts(scores, labels, bins)
    tpr = np.concatenate(([0.0], c.pos / c.pos_total))
    fpr = np.concatenate(([0.0], c.neg / c.neg_total))
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1])) * 0.5)


def average_precision(scores: Any, labels: Any, bins: int | None = None) -> float:
    """Average precision, step-wise without interpolation: sum_k (R_k - R_{k-1}) * P_k
    (``sklearn.metrics.average_precision_score``).

    With ``bins``: the exact AP of the quantised scores, and
    ``|binned - exact| <= sum_b (P_b / P) * max(P_b, N_b) / (T_b + F_b)`` with T_b, F_b the
    positives/negatives in bin b or above (every precision inside a bin differs from the one
    at the bin's end by at most that fraction); see :func:`binned_error_bound`.
    """
    c = _counts(scores, labels, bins)
    precision = c.pos / (c.pos + c.neg)
    recall_step = np.diff(np.concatenate(([0.0], c.pos))) / c.pos_total
    return float(np.sum(recall_step * precision))


def f1_max(scores: Any, labels: Any, bins: int | None = None) -> tuple[float, float]:
    """Best F1 over all thresholds, and that threshold (predict positive when score >= it).

    The highest threshold wins among equal F1 values.  With ``bins`` the threshold is the
    smallest score of a bin, so the returned F1 is attained exactly and is <= the exact best.
    """
    c = _counts(scores, labels, bins)
    f1 = 2.0 * c.pos / (c.pos + c.neg + c.pos_total)
    k = int(np.argmax(f1))
    return float(f1[k]), float(c.thresholds[k])


def binned_error_bound(scores: Any, labels: Any, bins: int) -> dict[str, float]:
    """Worst-case ``|binned - exact|`` of :func:`auroc` and :func:`average_precision` for these
    scores and ``bins`` (the bounds documented there), so a caller can pick ``bins``.
    Bins holding a single distinct score add nothing: their binned point is exact."""
    c = _counts(scores, labels, required_bins(bins))
    assert c.single_valued is not None  # set in binned mode
    mixed = ~c.single_valued
    p_b = np.diff(np.concatenate(([0.0], c.pos))) * mixed
    n_b = np.diff(np.concatenate(([0.0], c.neg))) * mixed
    return {
        "auroc": float(0.5 * np.sum(p_b * n_b) / (c.pos_total * c.neg_total)),
        "average_precision": float(
            np.sum(p_b / c.pos_total * np.maximum(p_b, n_b) / (c.pos + c.neg))
        ),
    }


def _downsample(x: np.ndarray, y: np.ndarray, max_points: int) -> np.ndarray:
    """Indices of at most ``max_points`` points spread evenly along the curve's length."""
    if max_points < 2:
        raise MetricError(f"max_points must be >= 2, got {max_points}")
    n = x.size
    if n <= max_points:
        return np.arange(n)
    arc = np.concatenate(([0.0], np.cumsum(np.abs(np.diff(x)) + np.abs(np.diff(y)))))
    if arc[-1] == 0:
        return np.array([0, n - 1])
    targets = np.linspace(0.0, arc[-1], max_points)
    idx = np.unique(np.clip(np.searchsorted(arc, targets, side="left"), 0, n - 1))
    idx[0], idx[-1] = 0, n - 1
    return np.unique(idx)


def roc_curve(
    scores: Any, labels: Any, max_points: int = 1000, bins: int | None = None
) -> RocCurve:
    """ROC curve for plotting: at most ``max_points`` exact points, spaced along the curve,
    always including (0, 0) and (1, 1)."""
    c = _counts(scores, labels, bins)
    fpr = np.concatenate(([0.0], c.neg / c.neg_total))
    tpr = np.concatenate(([0.0], c.pos / c.pos_total))
    thr = np.concatenate(([np.inf], c.thresholds))
    idx = _downsample(fpr, tpr, max_points)
    return RocCurve(fpr[idx], tpr[idx], thr[idx])


def pr_curve(
    scores: Any, labels: Any, max_points: int = 1000, bins: int | None = None
) -> PrCurve:
    """Precision-recall curve for plotting: at most ``max_points`` exact points, spaced along
    the curve, from the highest threshold down to the first threshold reaching recall 1."""
    c = _counts(scores, labels, bins)
    last = int(np.searchsorted(c.pos, c.pos_total, side="left"))  # first full-recall point
    pos, neg, thr = c.pos[: last + 1], c.neg[: last + 1], c.thresholds[: last + 1]
    precision = pos / (pos + neg)
    recall = pos / c.pos_total
    idx = _downsample(recall, precision, max_points)
    return PrCurve(precision[idx], recall[idx], thr[idx])
