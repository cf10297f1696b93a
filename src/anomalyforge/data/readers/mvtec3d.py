"""MVTec 3D-AD, RGB part only: `<split>/<type>/rgb/NNN.png` with masks `<split>/<type>/gt/NNN.png`.

The xyz point clouds are ignored. Good images' gt masks (all zero) are not used.
"""

from __future__ import annotations

from pathlib import Path

from anomalyforge.data.readers.base import Reader, ReadResult
from anomalyforge.data.scan import defect_sample, find_mask, good_samples, list_images, subdirs
from anomalyforge.data.types import GOOD, Sample

SPLITS = ("train", "validation", "test")


def is_mvtec3d(path: Path) -> bool:
    return any((path / split / t.name / "rgb").is_dir()
               for split in SPLITS if (path / split).is_dir() for t in subdirs(path / split))


def read(path: Path, category: str) -> ReadResult:
    warnings: list[str] = []
    samples: list[Sample] = []
    for split in SPLITS:
        if not (path / split).is_dir():
            continue
        for folder in subdirs(path / split):
            rgb = folder / "rgb"
            if not rgb.is_dir():
                continue
            if folder.name == GOOD:
                samples += good_samples(list_images(rgb, required=split == "train",
                                                    what="training folder of good images"),
                                        category, split)  # type: ignore[arg-type]
                continue
            for image in list_images(rgb, required=True, what="defect type folder"):
                mask = find_mask(folder / "gt", image.stem, ("", "_mask"))
                samples.append(defect_sample(image, mask, folder.name, category, split, warnings))  # type: ignore[arg-type]
    return samples, warnings


READER = Reader(name="mvtec3d", description="MVTec 3D-AD RGB (<split>/<type>/rgb, <split>/<type>/gt)",
                is_category=is_mvtec3d, read=read)
