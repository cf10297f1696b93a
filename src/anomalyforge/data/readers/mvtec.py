"""MVTec AD and MVTec LOCO AD: `train/good`, `test/<type>`, `ground_truth/<type>/...`.

MVTec AD masks are `ground_truth/<type>/NNN_mask.png`. MVTec LOCO keeps one folder of region
masks per image (`ground_truth/<type>/NNN/000.png ...`, OR-ed on read by `io.read_mask`), or one
merged file `ground_truth/<type>/NNN.png`; LOCO's `validation/good` becomes split "validation".
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from anomalyforge.data.readers.base import Reader, ReadResult
from anomalyforge.data.scan import defect_sample, find_mask, good_samples, list_images, subdirs, unused_masks
from anomalyforge.data.types import GOOD, Sample


def read_mvtec_like(path: Path, category: str, mask_suffixes: Sequence[str]) -> ReadResult:
    """Samples of an MVTec-style category folder; `mask_suffixes` are tried in order."""
    warnings: list[str] = []
    samples: list[Sample] = good_samples(
        list_images(path / "train" / GOOD, required=True, what="training folder of good images"),
        category, "train")
    samples += good_samples(list_images(path / "validation" / GOOD), category, "validation")
    test = path / "test"
    for folder in subdirs(test) if test.is_dir() else []:
        if folder.name == GOOD:
            samples += good_samples(list_images(folder), category, "test")
            continue
        gt = path / "ground_truth" / folder.name
        for image in list_images(folder, required=True, what="defect type folder"):
            mask = find_mask(gt, image.stem, mask_suffixes)
            samples.append(defect_sample(image, mask, folder.name, category, "test", warnings))
    unused_masks(path, samples, warnings)
    return samples, warnings


def _is_mvtec_base(path: Path) -> bool:
    return (path / "train" / GOOD).is_dir() and ((path / "test").is_dir() or (path / "ground_truth").is_dir())


def is_loco(path: Path) -> bool:
    """LOCO: MVTec layout plus `validation/good`, or per-image mask folders in `ground_truth`."""
    if not _is_mvtec_base(path):
        return False
    if (path / "validation" / GOOD).is_dir():
        return True
    gt = path / "ground_truth"
    return gt.is_dir() and any(sub.is_dir() for t in subdirs(gt) for sub in t.iterdir())


def is_mvtec(path: Path) -> bool:
    return _is_mvtec_base(path) and not (path / "train" / GOOD / "rgb").is_dir()


READER = Reader(
    name="mvtec", description="MVTec AD (train/good, test/<type>, ground_truth/<type>/NNN_mask.png)",
    is_category=is_mvtec,
    read=lambda path, category: read_mvtec_like(path, category, ("_mask", "")))

LOCO_READER = Reader(
    name="mvtec_loco",
    description="MVTec LOCO AD (validation/good; ground_truth/<type>/NNN/ mask folders or NNN.png)",
    is_category=is_loco,
    read=lambda path, category: read_mvtec_like(path, category, ("", "_mask")))
