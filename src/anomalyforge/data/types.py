"""Records shared by every reader: one `Sample` per image, a `Dataset` per category, a `FewShotSplit`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from anomalyforge.errors import DataError

Label = Literal["good", "defect"]
SplitName = Literal["train", "test", "validation"]

GOOD = "good"


@dataclass(frozen=True)
class Sample:
    """One image as the publisher laid it out.

    `split` is the publisher's split (train/test/validation); the few-shot protocol decides
    later which defect images are used for fitting and which for testing.
    `mask` is None for good images and for defect images whose layout has no mask.
    `id` is the file stem used for natural sorting (e.g. "007", "exp1_num_10181").
    """

    image: Path
    mask: Path | None
    label: Label
    defect_type: str  # "good" for good images
    category: str
    split: SplitName
    id: str

    def to_dict(self) -> dict:
        return {
            "image": str(self.image),
            "mask": None if self.mask is None else str(self.mask),
            "label": self.label,
            "defect_type": self.defect_type,
            "category": self.category,
            "split": self.split,
            "id": self.id,
        }


@dataclass
class Dataset:
    """All samples of one category in one layout, with the warnings the reader found."""

    root: Path
    category: str
    format: str
    samples: list[Sample]
    warnings: list[str] = field(default_factory=list)
    mask_threshold: int = 128  # grey level at which this dataset's (soft) masks are binarised

    @property
    def defect_types(self) -> list[str]:
        return sorted({s.defect_type for s in self.samples if s.label == "defect"})

    def select(self, *, label: Label | None = None, split: SplitName | None = None,
               defect_type: str | None = None) -> list[Sample]:
        return [s for s in self.samples
                if (label is None or s.label == label)
                and (split is None or s.split == split)
                and (defect_type is None or s.defect_type == defect_type)]


@dataclass
class FewShotSplit:
    """The leak-free protocol split of one category.

    train_defects: per defect type, the lowest-numbered ceil(n * ratio) defect images with a
    non-empty mask (the only real defects a generator or model may learn from).
    test_defects: per defect type, the rest (including defects with empty masks, kept for
    image-level testing). train_good / test_good: good images for training / testing.
    """

    category: str
    train_defects: dict[str, list[Sample]]
    test_defects: dict[str, list[Sample]]
    train_good: list[Sample]
    test_good: list[Sample]
    ratio: float
    warnings: list[str] = field(default_factory=list)  # e.g. defects left out of training (empty mask)
    mask_threshold: int = 128  # carried from the Dataset so masks are read as the reader checked them

    @property
    def defect_types(self) -> list[str]:
        return sorted(self.train_defects)

    def check_disjoint(self) -> None:
        """Raise if any image is in both train and test: the protocol forbids it by construction."""

        train = {s.image.resolve() for v in self.train_defects.values() for s in v}
        train |= {s.image.resolve() for s in self.train_good}
        test = {s.image.resolve() for v in self.test_defects.values() for s in v}
        test |= {s.image.resolve() for s in self.test_good}
        both = train & test
        if both:
            raise DataError(sorted(both)[0], "image is in both the training and the test split")
