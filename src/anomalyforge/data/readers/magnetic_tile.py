"""Magnetic Tile Defect: `MT_<class>/Imgs/<id>.jpg` with the soft mask `<id>.png` beside it.

`MT_Free` holds the good images; every other class is a defect type named by its class,
lower-cased without the `MT_` prefix (`MT_Blowhole` -> `blowhole`). The dataset has no
train/test split: good images get split "train", defects "test" (the few-shot protocol holds
out test normals itself).
"""

from __future__ import annotations

from pathlib import Path

from anomalyforge.data.readers.base import Reader, ReadResult
from anomalyforge.data.scan import defect_sample, good_samples, list_images, subdirs
from anomalyforge.data.types import Sample
from anomalyforge.errors import DataError

CATEGORY = "magnetic_tile"
FREE = "MT_Free"
MASK_EXT = ".png"


def _classes(path: Path) -> list[Path]:
    return [d for d in subdirs(path) if d.name.startswith("MT_") and (d / "Imgs").is_dir()]


def is_magnetic_tile(path: Path) -> bool:
    return bool(_classes(path))


def _images(imgs: Path) -> list[Path]:
    images = [p for p in list_images(imgs) if p.suffix.lower() != MASK_EXT]
    if not images:
        raise DataError(imgs, "class folder holds no images (expected <id>.jpg beside <id>.png masks)")
    return images


def read(path: Path, category: str) -> ReadResult:
    warnings: list[str] = []
    samples: list[Sample] = []
    classes = _classes(path)
    if not any(d.name == FREE for d in classes):
        raise DataError(path / FREE, "folder of good images not found")
    for folder in classes:
        imgs = folder / "Imgs"
        stems = {p.stem for p in _images(imgs)}
        warnings.extend(f"mask without image: {p}; it is not used" for p in list_images(imgs)
                        if p.suffix.lower() == MASK_EXT and p.stem not in stems)
        if folder.name == FREE:
            samples += good_samples(_images(imgs), category, "train")
            continue
        dtype = folder.name[3:].lower()
        for image in _images(imgs):
            mask = image.with_suffix(MASK_EXT)
            samples.append(defect_sample(image, mask if mask.is_file() else None, dtype, category,
                                         "test", warnings))
    return samples, warnings


READER = Reader(name="magnetic_tile", description="Magnetic Tile (MT_<class>/Imgs/<id>.jpg + <id>.png)",
                is_category=is_magnetic_tile, read=read, category_name=lambda path: CATEGORY)
