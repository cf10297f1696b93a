"""`FitData`: the few-shot training view of a category, the only data a generator may learn from."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from anomalyforge.data.io import read_image, read_mask
from anomalyforge.data.scan import verify_samples
from anomalyforge.data.types import Sample
from anomalyforge.errors import ConfigError


@dataclass
class FitData:
    """What a generator may learn from: few-shot defects (with masks) and good training images.

    Images are served resized to (size, size) uint8 RGB; masks to (size, size) uint8 {0, 255}.
    Loading is cached, so generators can index freely.
    """

    category: str
    size: int
    defects: dict[str, list[Sample]]  # defect type -> few-shot training defects (non-empty masks)
    good: list[Sample]  # good training images
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. user region masks, texture folder
    mask_threshold: int = 128  # the dataset's binarisation threshold for soft masks

    def __post_init__(self) -> None:
        self._image = lru_cache(maxsize=4096)(self._load_image)
        self._mask = lru_cache(maxsize=4096)(self._load_mask)

    def _load_image(self, path: str) -> np.ndarray:
        arr = read_image(path, self.size)
        arr.setflags(write=False)
        return arr

    def _load_mask(self, path: str) -> np.ndarray:
        arr = read_mask(path, self.size, threshold=self.mask_threshold)
        arr.setflags(write=False)
        return arr

    def image(self, sample: Sample) -> np.ndarray:
        """Read-only (size, size, 3) uint8 RGB array of a sample's image."""
        return self._image(str(sample.image))

    def mask(self, sample: Sample) -> np.ndarray:
        """Read-only (size, size) uint8 {0, 255} mask of a defect sample."""
        if sample.mask is None:
            raise ConfigError(f"{sample.image}: defect image has no mask")
        return self._mask(str(sample.mask))

    def verify(self) -> None:
        """Decode every few-shot defect (image and mask) and good training image, and check each
        mask's size against its image: one DataError naming every bad file (see `verify_samples`).
        Call it before writing anything, so a bad file never surfaces half-way through a run."""
        verify_samples([*(s for v in self.defects.values() for s in v), *self.good],
                       what="few-shot training files")

    @property
    def defect_types(self) -> list[str]:
        return sorted(self.defects)
