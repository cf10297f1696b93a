"""Cumulative positive/negative mass at every threshold — the engine behind every curve.

Point k of a curve means "everything scoring >= thresholds[k] is called positive".  Exact
mode sorts positives and negatives separately (``np.sort`` is several times faster than one
``argsort`` of everything) and finds the counts at every distinct score by binary search, in
float64.  Binned mode quantises scores into ``bins`` equal-width bins between the min and max
score (O(n), no sort).  Because that quantisation is monotone, every binned point is a point
of the exact curve (its threshold is the smallest score in its bin); binned curves only drop
the points *inside* a bin, so metrics differ from exact ones only through pairs of samples
that share a bin (see :func:`anomalyforge.metrics.ranking.auroc` for the bound).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Cumulative:
    """Descending thresholds and the positive weight / negative count at or above each."""

    thresholds: np.ndarray  # float64, strictly decreasing
    pos: np.ndarray  # float64 cumulative positive weight (true positives, or region overlap)
    neg: np.ndarray  # float64 cumulative negative count (false positives)
    pos_total: float
    neg_total: float
    # binned mode only: True where a bin holds one distinct score (the point is exact there)
    single_valued: np.ndarray | None = None


def _distinct_sorted(a: np.ndarray) -> np.ndarray:
    if a.size == 0:
        return a
    keep = np.empty(a.size, dtype=bool)
    keep[0] = True
    np.not_equal(a[1:], a[:-1], out=keep[1:])
    return a[keep]


def cumulate(
    pos_scores: np.ndarray,
    neg_scores: np.ndarray,
    pos_weights: np.ndarray | None = None,
    bins: int | None = None,
) -> Cumulative:
    """Cumulative positive weight (default 1 each) and negative count at each distinct threshold.

    Inputs are 1-D, finite, validated by the caller; both groups may not be empty together.
    """
    if bins is not None:
        return _cumulate_binned(pos_scores, neg_scores, pos_weights, bins)
    neg_sorted = np.sort(neg_scores)
    if pos_weights is None:
        pos_sorted = np.sort(pos_scores)
        pos_cum_desc = np.arange(pos_sorted.size + 1, dtype=np.float64)
        pos_total = float(pos_sorted.size)
    else:
        order = np.argsort(pos_scores, kind="stable")
        pos_sorted = pos_scores[order]
        w_desc = np.asarray(pos_weights, dtype=np.float64)[order[::-1]]
        pos_cum_desc = np.concatenate(([0.0], np.cumsum(w_desc)))
        pos_total = float(pos_cum_desc[-1])
    both = np.concatenate((_distinct_sorted(pos_sorted), _distinct_sorted(neg_sorted)))
    both.sort(kind="stable")  # two sorted runs: a linear merge
    thresholds = _distinct_sorted(both)[::-1]
    n_pos_ge = pos_sorted.size - np.searchsorted(pos_sorted, thresholds, side="left")
    n_neg_ge = neg_sorted.size - np.searchsorted(neg_sorted, thresholds, side="left")
    return Cumulative(
        thresholds=np.asarray(thresholds, dtype=np.float64),
        pos=pos_cum_desc[n_pos_ge],
        neg=n_neg_ge.astype(np.float64),
        pos_total=pos_total,
        neg_total=float(neg_sorted.size),
    )


def _quantise(x: np.ndarray, lo: float, scale: float, bins: int) -> np.ndarray:
    idx = ((x.astype(np.float64) - lo) * scale).astype(np.int64)
    np.clip(idx, 0, bins - 1, out=idx)
    return idx


def _cumulate_binned(
    pos_scores: np.ndarray, neg_scores: np.ndarray, pos_weights: np.ndarray | None, bins: int
) -> Cumulative:
    parts = [a for a in (pos_scores, neg_scores) if a.size]
    lo = float(min(a.min() for a in parts))
    hi = float(max(a.max() for a in parts))
    scale = bins / (hi - lo) if hi > lo else 0.0
    ip = _quantise(pos_scores, lo, scale, bins)
    ineg = _quantise(neg_scores, lo, scale, bins)
    w = None if pos_weights is None else np.asarray(pos_weights, dtype=np.float64)
    pos_hist = np.bincount(ip, weights=w, minlength=bins).astype(np.float64)
    neg_hist = np.bincount(ineg, minlength=bins).astype(np.float64)
    bin_min = np.full(bins, np.inf)
    bin_max = np.full(bins, -np.inf)
    for idx, x in ((ip, pos_scores), (ineg, neg_scores)):
        np.minimum.at(bin_min, idx, x)
        np.maximum.at(bin_max, idx, x)
    used = np.isfinite(bin_min)[::-1]  # descending bin order from here on
    pos_cum = np.cumsum(pos_hist[::-1])[used]
    neg_cum = np.cumsum(neg_hist[::-1])[used]
    return Cumulative(
        thresholds=bin_min[::-1][used],
        pos=pos_cum,
        neg=neg_cum,
        pos_total=float(pos_cum[-1]),
        neg_total=float(neg_cum[-1]),
        single_valued=(bin_min == bin_max)[::-1][used],
    )
