"""Image-level anomaly score from a pixel anomaly map: max of the average-pooled map.

Averaging over a window before taking the maximum (as in PatchCore-style papers) makes the
image score robust to single hot pixels while still reacting to small defects.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from anomalyforge.metrics.checks import as_map_list, as_scores
from anomalyforge.metrics.errors import MetricError

DEFAULT_POOL_AT_256 = 16


def default_pool(height: int, width: int) -> int:
    """16 px at 256 px, scaled with the shorter side (at least 1)."""
    return max(1, int(round(DEFAULT_POOL_AT_256 * min(height, width) / 256)))


def _max_window_mean(m: np.ndarray, k: int) -> float:
    """Max over all k x k windows fully inside the map (stride 1, no padding) of their mean.
    Uses an integral image, so odd and even k are handled the same way."""
    s = np.zeros((m.shape[0] + 1, m.shape[1] + 1), dtype=np.float64)
    np.cumsum(np.cumsum(m, axis=0, dtype=np.float64), axis=1, out=s[1:, 1:])
    sums = s[k:, k:] - s[:-k, k:] - s[k:, :-k] + s[:-k, :-k]
    return float(sums.max() / (k * k))


def image_scores_from_maps(maps: Any, pool: int | None = None) -> np.ndarray:
    """Image score per map = max of its ``pool`` x ``pool`` average-pooled map (float64, (N,)).

    ``maps``: (N, H, W), one (H, W) map, or a list of 2-D maps.  ``pool=None`` uses
    :func:`default_pool` per map; a pool larger than a map is clamped to its shorter side;
    ``pool=1`` gives the plain maximum.
    """
    if pool is not None and (isinstance(pool, bool) or not isinstance(pool, (int, np.integer))
                             or pool < 1):
        raise MetricError(f"pool must be a positive integer or None, got {pool!r}")
    out = []
    for i, m in enumerate(as_map_list(maps, "maps")):
        m = as_scores(m, f"maps[{i}]")
        k = default_pool(*m.shape) if pool is None else int(pool)
        out.append(_max_window_mean(m, min(k, *m.shape)))
    return np.asarray(out, dtype=np.float64)
