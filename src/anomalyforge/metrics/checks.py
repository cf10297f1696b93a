"""Input validation shared by all metrics: one clear MetricError per problem, no silent casts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from anomalyforge.metrics.errors import MetricError


def as_scores(scores: Any, name: str = "scores") -> np.ndarray:
    """Real, finite score array (any shape).  Floats keep their dtype (float16 -> float32) to
    keep sorting fast and memory low; bool/int become float64."""
    arr = np.asarray(scores)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise MetricError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    if np.iscomplexobj(arr):
        raise MetricError(f"{name} must be real, got complex dtype {arr.dtype}")
    if arr.size == 0:
        raise MetricError(f"{name} is empty")
    if arr.dtype == np.float16:
        arr = arr.astype(np.float32)
    elif not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        n_bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        raise MetricError(f"{name} contains {n_bad} NaN/inf value(s)")
    return arr


def as_binary(labels: Any, name: str = "labels") -> np.ndarray:
    """Boolean array from bool, {0, 1} or {0, 255} labels (the project's mask convention)."""
    arr = np.asarray(labels)
    if arr.dtype == bool:
        return arr
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise MetricError(f"{name} must be binary (bool, 0/1 or 0/255), got dtype {arr.dtype}")
    if arr.size == 0:
        raise MetricError(f"{name} is empty")
    hi = arr.max()
    one = 255 if hi == 255 else 1
    ok = (arr == 0) | (arr == one)
    if not ok.all():
        bad = arr[~ok].flat[0]
        raise MetricError(f"{name} must be binary (bool, 0/1 or 0/255); found value {bad!r}")
    return arr != 0


def same_shape(a: np.ndarray, b: np.ndarray, names: tuple[str, str]) -> None:
    """Raise unless both arrays have exactly the same shape."""
    if a.shape != b.shape:
        raise MetricError(f"shape mismatch: {names[0]} {a.shape} vs {names[1]} {b.shape}")


def scores_and_labels(scores: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validated, flattened (scores, bool labels) with at least one positive and one negative."""
    s = as_scores(scores)
    y = as_binary(labels)
    same_shape(s, y, ("scores", "labels"))
    s, y = s.ravel(), y.ravel()
    n_pos = int(np.count_nonzero(y))
    if n_pos == 0:
        raise MetricError(f"labels contain no positives (all {y.size} are negative)")
    if n_pos == y.size:
        raise MetricError(f"labels contain no negatives (all {y.size} are positive)")
    return s, y


def required_bins(bins: Any) -> int:
    """An integer >= 2 (for functions that only make sense in binned mode)."""
    checked = check_bins(bins)
    if checked is None:
        raise MetricError("bins must be an integer >= 2 here, got None")
    return checked


def check_bins(bins: int | None) -> int | None:
    """None (exact) or an integer >= 2."""
    if bins is None:
        return None
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 2:
        raise MetricError(f"bins must be None (exact) or an integer >= 2, got {bins!r}")
    return int(bins)


def as_map_list(x: Any, name: str) -> list[np.ndarray]:
    """(N, H, W) array, one (H, W) map, or a sequence of 2-D maps (sizes may differ)."""
    if isinstance(x, Sequence) and not isinstance(x, (str, bytes)):
        items = [np.asarray(a) for a in x]
        if not items:
            raise MetricError(f"{name} is empty")
        if all(a.ndim == 2 for a in items):
            return items
        try:  # nested lists of numbers: one (N, H, W) or (H, W) array
            return _stack_levels(np.asarray(x), name)
        except ValueError:  # ragged
            i = next(i for i, a in enumerate(items) if a.ndim != 2)
            raise MetricError(
                f"{name}[{i}] must be 2-D (H, W), got shape {items[i].shape}"
            ) from None
    return _stack_levels(np.asarray(x), name)


def _stack_levels(arr: np.ndarray, name: str) -> list[np.ndarray]:
    if arr.ndim == 2:
        return [arr]
    if arr.ndim == 3:
        return list(arr)
    raise MetricError(f"{name} must be (N, H, W) or (H, W), got shape {arr.shape}")
