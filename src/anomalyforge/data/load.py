"""`load_dataset` / `load_datasets`: find the categories under a path and read them.

A path is either one category folder (its layout is detected from folder names) or a dataset
root holding category folders one or two levels down (`mvtec_ad/bottle`, `visa/candle`, ...).
"""

from __future__ import annotations

from pathlib import Path

from anomalyforge.data.readers import ALIASES, FORMATS, READERS, Reader
from anomalyforge.data.scan import check_images, require_dir, subdirs
from anomalyforge.data.types import Dataset
from anomalyforge.errors import ConfigError, DataError


def get_reader(data_format: str) -> Reader:
    """The reader for a format name (or alias); ConfigError listing the known formats."""
    name = ALIASES.get(data_format.lower(), data_format.lower())
    if name not in FORMATS:
        raise ConfigError(f"unknown data format {data_format!r}; known: {', '.join(FORMATS)}")
    return FORMATS[name]


def detect_format(path: str | Path) -> Reader | None:
    """The first reader (most specific first) that recognises `path` as one category folder."""
    path = Path(path)
    return next((r for r in READERS if r.is_category(path)), None)


def _match(path: Path, forced: Reader | None) -> Reader | None:
    if forced is not None:
        return forced if forced.is_category(path) else None
    return detect_format(path)


def _explain_partial(path: Path) -> None:
    """A folder with `test/` or `ground_truth/` but no training folder is a broken category, not a root."""
    if ((path / "test").is_dir() or (path / "ground_truth").is_dir()) and not (path / "train").is_dir():
        raise DataError(path / "train", "folder not found (a category in the MVTec/BTAD layouts needs "
                                        "train/good or train/ok)")
    train = path / "train"
    if train.is_dir() and not any((train / name).is_dir() for name in ("good", "ok")):
        raise DataError(train / "good", "folder not found (a category in the MVTec/BTAD layouts needs "
                                        "train/good or train/ok)")


def find_categories(path: str | Path, data_format: str | None = None) -> dict[str, tuple[Path, Reader]]:
    """Category name -> (category folder, reader) for a category folder or a dataset root.

    Raises DataError for a missing or empty folder, or when no known layout is found.
    """
    path = require_dir(Path(path))
    if not any(p for p in path.iterdir() if not p.name.startswith(".")):
        raise DataError(path, "folder is empty")
    forced = get_reader(data_format) if data_format else None
    reader = _match(path, forced)
    if reader is not None:
        return {reader.category_name(path): (path, reader)}
    _explain_partial(path)
    found: dict[str, tuple[Path, Reader]] = {}

    def add(folder: Path, reader: Reader, prefix: str | None) -> None:
        name = reader.category_name(folder)
        if name in found and prefix is not None:
            name = f"{prefix}/{name}"
        found.setdefault(name, (folder, reader))

    for sub in subdirs(path):
        reader = _match(sub, forced)
        if reader is not None:
            add(sub, reader, None)
            continue
        for subsub in subdirs(sub):
            reader = _match(subsub, forced)
            if reader is not None:
                add(subsub, reader, sub.name)
    if not found:
        if forced is not None:
            raise DataError(path, f"not a {forced.name} dataset: expected {forced.description}")
        raise DataError(path, "unknown dataset layout: no category folder in a known format here or "
                              "below (" + "; ".join(r.description for r in READERS) + ")")
    return found


def _read(folder: Path, name: str, reader: Reader, mask_threshold: int) -> Dataset:
    samples, warnings = reader.read(folder, name)
    if not samples:
        raise DataError(folder, f"no images found ({reader.description})")
    check_images(samples)
    if not any(s.label == "good" for s in samples):
        raise DataError(folder, "no good (defect-free) images found")
    return Dataset(root=folder, category=name, format=reader.name, samples=samples,
                   warnings=warnings, mask_threshold=mask_threshold)


def _check_threshold(mask_threshold: int) -> None:
    if not 1 <= int(mask_threshold) <= 255:
        raise ConfigError(f"mask threshold must be in 1..255, got {mask_threshold}")


def load_dataset(path: str | Path, category: str | None = None, data_format: str | None = None,
                 mask_threshold: int = 128) -> Dataset:
    """Read one category: `path` is its folder, or a dataset root and `category` picks one.

    `data_format` forces a layout (mvtec, mvtec_loco, mvtec3d, visa, btad, magnetic_tile, folder)
    instead of detecting it. Every mask's size is checked against its image from file headers.
    Raises ConfigError for an unknown category or several categories without `category`, and
    DataError for missing/empty folders, unknown layouts and unreadable or mismatched files.
    """
    _check_threshold(mask_threshold)
    cats = find_categories(path, data_format)
    if category is not None:
        key = category if category in cats else None
        if key is None:
            by_name = [k for k, (folder, _) in cats.items() if folder.name == category or k.split("/")[-1] == category]
            key = by_name[0] if len(by_name) == 1 else None
        if key is None:
            raise ConfigError(f"unknown category {category!r} in {path}; available: {', '.join(cats)}")
    elif len(cats) > 1:
        raise ConfigError(f"{path} holds several categories; pick one with category/--category: "
                          f"{', '.join(cats)}")
    else:
        key = next(iter(cats))
    folder, reader = cats[key]
    return _read(folder, key, reader, mask_threshold)


def load_datasets(path: str | Path, data_format: str | None = None, mask_threshold: int = 128) -> list[Dataset]:
    """Read every category under `path` (a category folder gives a one-element list)."""
    _check_threshold(mask_threshold)
    return [_read(folder, name, reader, mask_threshold)
            for name, (folder, reader) in find_categories(path, data_format).items()]
