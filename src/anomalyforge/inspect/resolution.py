"""Input size chosen from the few-shot defects' sizes, so small defects are not lost to the squash.

Every model here sees the image resized to a square `size`. A defect's share of the image area
does not change under that resize, so the side of a square of the same area, as a fraction of
the image side (`relative side` = sqrt(component area / image area)), says how many pixels the
defect spans at any size: `relative side * size`. The finest feature level the baseline PatchCore
and the head read (stride 8) turns an 8 x 8 pixel cell into one feature vector, so a defect
narrower than one cell is averaged away with its background. The chosen size is the smallest of a
ladder at which the `quantile` (default: the 10th percentile) of the few-shot defects' connected
components spans at least `min_px` pixels (default 8, one stride-8 cell); the largest of the
ladder when none does. Only the few-shot TRAINING masks are read, so the choice is made before
the test split is opened, and no number in it was fitted to a category.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from anomalyforge.errors import ConfigError

LADDER = (256, 384, 512)
MIN_DEFECT_PX = 8  # one cell of the stride-8 feature level
QUANTILE = 0.1


def relative_sides(mask: np.ndarray) -> np.ndarray:
    """sqrt(area / image area) of each 8-connected component of a binary (H, W) mask."""
    m = (np.asarray(mask) > 0).astype(np.uint8)
    if m.ndim != 2:
        raise ConfigError(f"a defect mask must be (H, W), got shape {m.shape}")
    n, _, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    areas = stats[1:n, cv2.CC_STAT_AREA].astype(np.float64)
    return np.sqrt(areas / float(m.size))


@dataclass(frozen=True)
class SizeChoice:
    """The chosen input size and what it was chosen from (results.json `size_choice`)."""

    size: int
    ladder: tuple[int, ...]
    min_px: int
    quantile: float
    relative_side: float  # the `quantile` of the components' relative sides
    components: int  # connected components of the few-shot masks
    span_px: dict[int, float]  # what that defect spans at each size of the ladder

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ladder"] = list(self.ladder)
        d["span_px"] = {str(k): v for k, v in self.span_px.items()}
        return d


def size_for_defects(masks: Iterable[np.ndarray], ladder: Iterable[int] = LADDER, min_px: int = MIN_DEFECT_PX,
                     quantile: float = QUANTILE) -> SizeChoice:
    """The smallest size of `ladder` at which the `quantile` of the defects' components spans at
    least `min_px` pixels (see the module doc); ConfigError when no mask has a defect pixel."""
    sizes = tuple(sorted({int(s) for s in ladder}))
    if not sizes or sizes[0] < 16:
        raise ConfigError(f"size ladder must hold sizes >= 16, got {list(ladder)}")
    if not 0.0 <= quantile <= 1.0 or min_px < 1:
        raise ConfigError(f"size choice needs 0 <= quantile <= 1 and min_px >= 1, got {quantile}, {min_px}")
    sides = np.concatenate([relative_sides(m) for m in masks] or [np.zeros(0)])
    if not len(sides):
        raise ConfigError("no defect pixel in the few-shot masks: nothing to choose the input size from")
    side = float(np.quantile(sides, quantile))
    span = {s: round(side * s, 2) for s in sizes}
    size = next((s for s in sizes if side * s >= min_px), sizes[-1])
    return SizeChoice(size, sizes, int(min_px), float(quantile), round(side, 5), int(len(sides)), span)
