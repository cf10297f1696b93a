"""Generic folder layout: `good/` images plus `defect/` or `<type>/` folders of defect images.

Masks are matched by file name in a `masks/` or `ground_truth/` tree (also `gt/`, `mask/`):
`<tree>/<type>/<stem>[ _mask].<ext>` or `<tree>/<stem>[ _mask].<ext>`. The layout has no split:
good images get split "train", defects "test".
"""

from __future__ import annotations

from pathlib import Path

from anomalyforge.data.readers.base import Reader, ReadResult
from anomalyforge.data.scan import defect_sample, find_mask, good_samples, has_images, list_images, subdirs
from anomalyforge.data.types import GOOD, Sample

MASK_TREES = ("masks", "ground_truth", "gt", "mask")


def _defect_dirs(path: Path) -> list[Path]:
    return [d for d in subdirs(path) if d.name != GOOD and d.name.lower() not in MASK_TREES]


def is_folder(path: Path) -> bool:
    return has_images(path / GOOD) and bool(_defect_dirs(path))


def _mask_for(path: Path, dtype: str, stem: str) -> Path | None:
    for tree in MASK_TREES:
        for where in (path / tree / dtype, path / tree):
            found = find_mask(where, stem, ("", "_mask"))
            if found is not None and found.is_file():
                return found
    return None


def read(path: Path, category: str) -> ReadResult:
    warnings: list[str] = []
    samples: list[Sample] = good_samples(list_images(path / GOOD, required=True, what="folder of good images"),
                                         category, "train")
    for folder in _defect_dirs(path):
        for image in list_images(folder, required=True, what="defect type folder"):
            samples.append(defect_sample(image, _mask_for(path, folder.name, image.stem), folder.name,
                                         category, "test", warnings))
    return samples, warnings


READER = Reader(name="folder", description="generic folder (good/, defect/ or <type>/, masks/ or ground_truth/)",
                is_category=is_folder, read=read)
