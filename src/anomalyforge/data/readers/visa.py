"""VisA: images listed by the split file `split_csv/1cls.csv` (object,split,label,image,mask).

Paths in the CSV are relative to the dataset root (the folder holding `split_csv/`). VisA has no
defect type names: every anomaly gets the type "anomaly". Without the CSV, the category's
`Data/Images/Normal` and `Data/Images/Anomaly` folders are read (masks in `Data/Masks/Anomaly`)
and the publisher's split is unknown (good images get split "train"). VisA masks are label maps
(small non-zero values), which `io.read_mask` recognises.
"""

from __future__ import annotations

import csv
from pathlib import Path

from anomalyforge.data.readers.base import Reader, ReadResult
from anomalyforge.data.scan import defect_sample, find_mask, good_samples, list_images
from anomalyforge.data.types import Sample
from anomalyforge.errors import DataError

ANOMALY = "anomaly"
SPLIT_CSV = Path("split_csv") / "1cls.csv"
COLUMNS = ("object", "split", "label", "image", "mask")


def is_visa(path: Path) -> bool:
    return (path / "Data" / "Images").is_dir()


def _read_csv(csv_path: Path, category: str) -> list[dict[str, str]]:
    try:
        with open(csv_path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise DataError(csv_path, f"split file lacks column(s) {', '.join(missing)}")
            return [row for row in reader if row["object"] == category]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(csv_path, f"cannot read split file ({exc})") from None


def _from_csv(root: Path, csv_path: Path, rows: list[dict[str, str]], category: str) -> ReadResult:
    warnings: list[str] = []
    samples: list[Sample] = []
    for i, row in enumerate(rows, start=2):
        split, label = row["split"].strip(), row["label"].strip()
        if split not in ("train", "test") or label not in ("normal", ANOMALY):
            raise DataError(csv_path, f"line {i}: expected split train/test and label normal/anomaly, "
                                      f"got {split!r}/{label!r}")
        image = root / row["image"].strip()
        if label == "normal":
            samples += good_samples([image], category, split)  # type: ignore[arg-type]
        else:
            mask = root / row["mask"].strip() if row["mask"].strip() else None
            if mask is not None and not mask.is_file():
                raise DataError(mask, f"mask listed in {csv_path.name} line {i} not found")
            if not image.is_file():
                raise DataError(image, f"image listed in {csv_path.name} line {i} not found")
            samples.append(defect_sample(image, mask, ANOMALY, category, split, warnings))  # type: ignore[arg-type]
    return samples, warnings


def read(path: Path, category: str) -> ReadResult:
    csv_path = path.parent / SPLIT_CSV
    if csv_path.is_file():
        rows = _read_csv(csv_path, path.name)
        if rows:
            return _from_csv(path.parent, csv_path, rows, category)
    warnings = [f"no split file {SPLIT_CSV} listing {path.name!r} beside the category; "
                "read Data/Images/Normal and Data/Images/Anomaly without the publisher's split"]
    images = path / "Data" / "Images"
    samples = good_samples(list_images(images / "Normal", required=True, what="folder of good images"),
                           category, "train")
    for image in list_images(images / "Anomaly", required=True, what="defect folder"):
        mask = find_mask(path / "Data" / "Masks" / "Anomaly", image.stem, ("", "_mask"))
        samples.append(defect_sample(image, mask, ANOMALY, category, "test", warnings))
    return samples, warnings


READER = Reader(name="visa", description="VisA (split_csv/1cls.csv; <object>/Data/Images, Data/Masks)",
                is_category=is_visa, read=read)
