"""BTAD: `NN/train/ok`, `NN/test/ok|ko`, masks `NN/ground_truth/ko/<stem>.<ext>`.

Mask extensions may differ from the images' (.bmp images with .png masks). The defect type is
the publisher's folder name, "ko".
"""

from __future__ import annotations

from pathlib import Path

from anomalyforge.data.readers.base import Reader, ReadResult
from anomalyforge.data.scan import defect_sample, find_mask, good_samples, list_images, subdirs, unused_masks
from anomalyforge.data.types import Sample

OK = "ok"


def is_btad(path: Path) -> bool:
    return (path / "train" / OK).is_dir()


def read(path: Path, category: str) -> ReadResult:
    warnings: list[str] = []
    samples: list[Sample] = good_samples(
        list_images(path / "train" / OK, required=True, what="training folder of good images"),
        category, "train")
    test = path / "test"
    for folder in subdirs(test) if test.is_dir() else []:
        if folder.name == OK:
            samples += good_samples(list_images(folder), category, "test")
            continue
        for image in list_images(folder, required=True, what="defect type folder"):
            mask = find_mask(path / "ground_truth" / folder.name, image.stem, ("", "_mask"))
            samples.append(defect_sample(image, mask, folder.name, category, "test", warnings))
    unused_masks(path, samples, warnings)
    return samples, warnings


READER = Reader(name="btad", description="BTAD (train/ok, test/ok|ko, ground_truth/ko)",
                is_category=is_btad, read=read)
