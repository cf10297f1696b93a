"""Generated training pairs as arrays: the only defect data the inspection models learn from.

`GeneratedPairs` is built from a synthesis run's manifest (`from_run`), from arrays (tests,
custom pipelines) or from the real few-shot training defects (`from_fit_data`, the no-synthesis
baseline). It never holds real test images: the benchmark reads those separately.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from anomalyforge.data.io import read_image, read_mask
from anomalyforge.errors import ConfigError, DataError
from anomalyforge.formats.manifest import PairRecord, read_pairs


@dataclass
class GeneratedPairs:
    """Images (N, S, S, 3) uint8, masks (N, S, S) uint8 {0, 255}, defect type per pair."""

    images: np.ndarray
    masks: np.ndarray
    types: list[str]
    category: str | None = None
    # per pair, the real training defect image it was pasted from ("" when the method names none,
    # e.g. cutpaste / perlin / diffusion): the k-fold thresholds drop the pairs of held-out defects
    donors: list[str] | None = None

    def __post_init__(self) -> None:
        if len(self.images) != len(self.masks) or len(self.images) != len(self.types):
            raise ConfigError("generated pairs: images, masks and types differ in length")
        if self.donors is not None and len(self.donors) != len(self.types):
            raise ConfigError("generated pairs: donors and types differ in length")

    def subset(self, keep: Sequence[int] | np.ndarray) -> GeneratedPairs:
        """The pairs at indices `keep`, in that order."""
        idx = np.asarray(keep, dtype=np.int64)
        return GeneratedPairs(self.images[idx], self.masks[idx], [self.types[i] for i in idx], self.category,
                              None if self.donors is None else [self.donors[i] for i in idx])

    def __len__(self) -> int:
        return len(self.types)

    @property
    def defect_types(self) -> list[str]:
        return sorted(set(self.types))

    def counts(self) -> dict[str, int]:
        return {t: self.types.count(t) for t in self.defect_types}

    @classmethod
    def from_records(cls, run: Path, records: Sequence[PairRecord], size: int,
                     category: str | None = None, progress: bool = True) -> GeneratedPairs:
        """Load manifest records (paths relative to `run`) resized to `size`."""
        run = Path(run)
        if not records:
            raise DataError(run, "generated run holds no pairs")
        cats = {r.category for r in records if r.category}
        if category is not None and cats and cats != {category}:
            raise DataError(run, f"generated run is for category {', '.join(sorted(cats))}, "
                                 f"not {category}")
        n = len(records)
        images = np.zeros((n, size, size, 3), np.uint8)
        masks = np.zeros((n, size, size), np.uint8)
        types, donors = [], []
        for i, r in enumerate(tqdm(records, desc=f"load {run.name}", disable=not progress, leave=False)):
            images[i] = read_image(run / r.image, size)
            masks[i] = read_mask(run / r.mask, size)
            types.append(r.base_type)  # sub-types <type>@<k> (GAA clustering) train and test as their type
            donors.append(str(r.params.get("defect") or ""))  # croppaste: the real defect pasted
        return cls(images, masks, types, category if category is not None else next(iter(cats), None), donors)

    @classmethod
    def from_run(cls, run: Path, size: int, category: str | None = None,
                 progress: bool = True) -> GeneratedPairs:
        """Read the kept pairs of a synthesis run folder (`anomalyforge.formats.manifest.read_pairs`)."""

        run = Path(run)
        if not run.is_dir():
            raise DataError(run, "generated run folder not found")
        return cls.from_records(run, read_pairs(run), size, category, progress)

    @classmethod
    def from_fit_data(cls, fit) -> GeneratedPairs:
        """The real few-shot training defects themselves as pairs (at `fit.size`): what a model can
        learn without any synthesis, the baseline the generated pairs must beat."""
        items = [(s, t) for t in fit.defect_types for s in fit.defects[t]]
        if not items:
            raise ConfigError(f"{fit.category}: no few-shot training defects")
        return cls(np.stack([fit.image(s) for s, _ in items]), np.stack([fit.mask(s) for s, _ in items]),
                   [t for _, t in items], fit.category, [str(s.image) for s, _ in items])

    def __add__(self, other: GeneratedPairs) -> GeneratedPairs:
        """Both sets of pairs in one (same image size)."""
        if self.images.shape[1:] != other.images.shape[1:]:
            raise ConfigError(f"cannot join pairs of size {self.images.shape[1:3]} and {other.images.shape[1:3]}")
        donors = (None if self.donors is None and other.donors is None else
                  (self.donors or [""] * len(self)) + (other.donors or [""] * len(other)))
        return GeneratedPairs(np.concatenate([self.images, other.images]), np.concatenate([self.masks, other.masks]),
                              self.types + other.types, self.category or other.category, donors)

    def check_covers(self, needed: Iterable[str], where: Path | str | None = None) -> None:
        """Raise unless every defect type in `needed` has at least one pair."""
        have = self.counts()
        missing = [t for t in needed if have.get(t, 0) == 0]
        if missing:
            raise DataError(where, f"generated run has no pairs for defect type(s) {', '.join(missing)} "
                                   f"that have test images (has: {', '.join(have) or 'none'})")
