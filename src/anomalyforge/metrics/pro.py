"""Per-region overlap (PRO) curve and its normalised area AUPRO, as in the MVTec AD evaluation.

Each 8-connected component of each ground-truth mask is one region.  At a threshold t the PRO
is the mean over all regions of the fraction of the region's pixels scoring >= t; the FPR is
the fraction of good pixels (outside every mask, good images included) scoring >= t.  The
curve runs over every distinct score, starts at (0, 0) and ends at (1, 1); AUPRO is its
trapezoid area up to ``fpr_limit`` (the curve interpolated linearly at exactly
``fpr_limit``) divided by ``fpr_limit``.  Vectorised: regions are labelled once
(scipy.ndimage), region sizes come from one ``bincount`` over global region ids, and each
region pixel carries weight 1/size so a single cumulative sum gives the summed overlap at
every threshold.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from scipy import ndimage

from anomalyforge.metrics.checks import as_binary, as_map_list, as_scores, check_bins, required_bins, same_shape
from anomalyforge.metrics.counts import Cumulative, cumulate
from anomalyforge.metrics.errors import MetricError

_EIGHT = np.ones((3, 3), dtype=bool)


class ProCurve(NamedTuple):
    """False-positive rate on good pixels and mean per-region overlap, thresholds decreasing."""

    fpr: np.ndarray
    pro: np.ndarray
    thresholds: np.ndarray  # +inf / -inf for the added (0, 0) / (1, 1) end points


def _gather(maps: Any, masks: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Scores of region pixels, their weights 1/region size, scores of good pixels, sizes."""
    map_list, mask_list = as_map_list(maps, "maps"), as_map_list(masks, "masks")
    if len(map_list) != len(mask_list):
        raise MetricError(f"shape mismatch: {len(map_list)} maps vs {len(mask_list)} masks")
    region_scores, region_ids, good_scores = [], [], []
    n_regions = 0
    for i, (m, g) in enumerate(zip(map_list, mask_list, strict=False)):
        s = as_scores(m, f"maps[{i}]")
        b = as_binary(g, f"masks[{i}]")
        same_shape(s, b, (f"maps[{i}]", f"masks[{i}]"))
        lab, n = ndimage.label(b, structure=_EIGHT)
        region_scores.append(s[b])
        region_ids.append(lab[b].astype(np.int64) + (n_regions - 1))
        good_scores.append(s[~b])
        n_regions += n
    if n_regions == 0:
        raise MetricError("masks contain no defect region (no positive pixel)")
    rs = np.concatenate(region_scores)
    ids = np.concatenate(region_ids)
    gs = np.concatenate(good_scores)
    if gs.size == 0:
        raise MetricError("masks cover every pixel: no good pixel to measure false positives on")
    sizes = np.bincount(ids, minlength=n_regions).astype(np.float64)
    return rs, 1.0 / sizes[ids], gs, sizes


def pro_curve(maps: Any, masks: Any, bins: int | None = None) -> ProCurve:
    """Full (FPR, PRO) curve at every distinct score (or bin with ``bins``)."""
    rs, w, gs, sizes = _gather(maps, masks)
    return _curve(cumulate(rs, gs, pos_weights=w, bins=check_bins(bins)), sizes.size)


def _curve(c: Cumulative, n_regions: int) -> ProCurve:
    fpr = np.minimum(c.neg / c.neg_total, 1.0)
    pro = np.minimum(c.pos / n_regions, 1.0)
    return ProCurve(
        fpr=np.concatenate(([0.0], fpr, [1.0])),
        pro=np.concatenate(([0.0], pro, [1.0])),
        thresholds=np.concatenate(([np.inf], c.thresholds, [-np.inf])),
    )


def area_to(x: np.ndarray, y: np.ndarray, x_max: float) -> float:
    """Trapezoid area under y(x) for x in [x[0], x_max]; x non-decreasing and reaching x_max.
    Between the last point <= x_max and the next one, y is interpolated linearly at x_max."""
    k = int(np.searchsorted(x, x_max, side="right"))  # points with x <= x_max
    xs, ys = x[:k], y[:k]
    area = float(np.sum(np.diff(xs) * (ys[1:] + ys[:-1])) * 0.5)
    if k < x.size and xs[-1] < x_max:
        y_max = ys[-1] + (y[k] - ys[-1]) * (x_max - xs[-1]) / (x[k] - xs[-1])
        area += 0.5 * (ys[-1] + y_max) * (x_max - xs[-1])
    return area


def _check_limit(fpr_limit: Any) -> float:
    ok = isinstance(fpr_limit, (int, float, np.integer, np.floating)) and not isinstance(
        fpr_limit, bool
    )
    if not (ok and 0.0 < float(fpr_limit) <= 1.0):
        raise MetricError(f"fpr_limit must be in (0, 1], got {fpr_limit!r}")
    return float(fpr_limit)


def aupro(maps: Any, masks: Any, fpr_limit: float = 0.3, bins: int | None = None) -> float:
    """Normalised area under the PRO curve up to ``fpr_limit`` (MVTec AD definition), in [0, 1].

    ``maps``: anomaly maps (N, H, W), one (H, W) map, or a list of 2-D maps; ``masks``: the
    matching binary masks (bool, 0/1 or 0/255).  ``bins``: O(n) histogram mode; every binned
    point lies on the exact curve, the area only loses the detail inside each bin (at most
    :func:`aupro_binned_error_bound`).
    """
    fpr_limit = _check_limit(fpr_limit)
    curve = pro_curve(maps, masks, bins=bins)
    return area_to(curve.fpr, curve.pro, fpr_limit) / fpr_limit


def aupro_binned_error_bound(
    maps: Any, masks: Any, bins: int, fpr_limit: float = 0.3
) -> float:
    """Worst-case ``|aupro(bins=bins) - aupro()|``.

    Inside each bin the exact curve is a monotone path between two consecutive binned points,
    so it stays in their bounding box: the area differs by at most half the box for bins
    fully below ``fpr_limit`` and at most the clipped box for the bin crossing it.
    """
    fpr_limit = _check_limit(fpr_limit)
    rs, w, gs, sizes = _gather(maps, masks)
    c = cumulate(rs, gs, pos_weights=w, bins=required_bins(bins))
    curve = _curve(c, sizes.size)
    assert c.single_valued is not None  # set in binned mode
    x0, x1 = curve.fpr[:-1], curve.fpr[1:]
    # the segment into a bin holding one distinct score is exact (the final (1, 1) is too)
    dy = np.diff(curve.pro) * np.concatenate((~c.single_valued, [False]))
    inside = x1 <= fpr_limit
    crossing = (x0 < fpr_limit) & ~inside
    bound = 0.5 * np.sum((x1 - x0)[inside] * dy[inside])
    bound += np.sum((fpr_limit - x0[crossing]) * dy[crossing])
    return float(bound / fpr_limit)
