"""`info`: what a dataset holds, how the few-shot protocol splits it, and what looks wrong.

Used by `anomalyforge info`. Besides counting, it decodes every image and mask once (unless
`verify=False`) so truncated or corrupt files are found before a long run trips over them.
"""

from __future__ import annotations

import warnings as _warnings
from collections import Counter
from pathlib import Path

from tqdm import tqdm

from anomalyforge.data.fewshot import few_shot_split
from anomalyforge.data.io import is_label_map, mask_levels, verify_image
from anomalyforge.data.load import load_dataset, load_datasets
from anomalyforge.data.natsort import natural_key
from anomalyforge.data.types import GOOD, Dataset, FewShotSplit

SPLIT_ORDER = {"train": 0, "validation": 1, "test": 2}


def _counts(dataset: Dataset) -> dict[str, int]:
    counts = Counter(f"{s.split}/{s.defect_type}" for s in dataset.samples)

    def order(key: str) -> tuple:
        split, dtype = key.split("/", 1)
        return (SPLIT_ORDER.get(split, 9), dtype != GOOD, natural_key(dtype))

    return {k: counts[k] for k in sorted(counts, key=order)}


def _verify(dataset: Dataset, progress: bool | None) -> list[str]:
    """Decode every image and mask (DataError on the first bad file); note varying image sizes and
    masks that are not binary (how they are binarised)."""
    sizes: Counter = Counter()
    soft: list[tuple[Path, int]] = []
    labels: list[tuple[Path, int]] = []
    t = dataset.mask_threshold
    files = [(s.image, s.mask) for s in dataset.samples]
    for image, mask in tqdm(files, desc=f"{dataset.category}: verifying files", unit="image", leave=False,
                            disable=(not progress) if progress is not None else None):
        sizes[verify_image(image)] += 1
        if mask is not None:
            _, levels, top = mask_levels(mask)
            if levels > 2:
                (labels if is_label_map(levels, top, t) else soft).append((mask, levels))
    notes = []
    if len(sizes) > 1:
        lo, hi = min(sizes, key=lambda wh: wh[0] * wh[1]), max(sizes, key=lambda wh: wh[0] * wh[1])
        notes.append(f"images have {len(sizes)} different sizes (smallest {lo[0]}x{lo[1]}, largest "
                     f"{hi[0]}x{hi[1]}); they are resized to a square working size")
    if soft:
        notes.append(f"{len(soft)} mask(s) are not binary (more than two grey levels, e.g. {soft[0][0]}: "
                     f"{soft[0][1]} levels); they are binarised at grey level {t}: pixels >= {t} are defect "
                     f"(--mask-threshold)")
    if labels:
        notes.append(f"{len(labels)} mask(s) are label maps with several class ids (e.g. {labels[0][0]}: "
                     f"{labels[0][1]} levels); every non-zero pixel is defect")
    return notes


def _no_defects(dataset: Dataset) -> list[str]:
    if dataset.defect_types:
        return []
    return [f"no defect images in {dataset.root}: only good images; generate, cluster and benchmark need "
            f"defect images with masks"]


def _test_good_source(dataset: Dataset, split: FewShotSplit, holdout: float, seed: int) -> str:
    if any(s.split == "test" for s in split.test_good):
        return "test/good"
    if any(s.split == "validation" for s in split.test_good):
        return "validation/good"
    if split.test_good:
        return f"held out {holdout:.0%} of the good images (seed {seed})"
    return "none"


def category_info(dataset: Dataset, ratio: float = 1 / 3, *, verify: bool = True,
                  progress: bool | None = None, holdout: float = 0.2, seed: int = 0) -> dict:
    """The info dict of one loaded category (see `dataset_info` for its keys)."""
    verify_notes = _verify(dataset, progress) if verify else []
    with _warnings.catch_warnings():
        _warnings.simplefilter("ignore")
        split = few_shot_split(dataset, ratio, holdout=holdout, seed=seed, progress=progress)
    return {
        "category": dataset.category,
        "format": dataset.format,
        "root": str(dataset.root),
        "counts": _counts(dataset),
        "few_shot": {t: {"train": len(split.train_defects.get(t, [])), "test": len(v)}
                     for t, v in sorted(split.test_defects.items(), key=lambda kv: natural_key(kv[0]))},
        "good": {"train": len(split.train_good), "test": len(split.test_good)},
        "test_good_from": _test_good_source(dataset, split, holdout, seed),
        "ratio": ratio,
        "mask_threshold": dataset.mask_threshold,
        "verified": verify,
        "warnings": list(dataset.warnings) + list(split.warnings) + verify_notes + _no_defects(dataset),
    }


def dataset_info(path: str | Path, category: str | None = None, data_format: str | None = None,
                 ratio: float = 1 / 3, *, verify: bool = True, progress: bool | None = None,
                 holdout: float = 0.2, seed: int = 0, mask_threshold: int = 128) -> list[dict]:
    """One dict per category under `path` (only `category` when given).

    Keys: category, format, root, counts ("<split>/<type>" -> images), few_shot (type ->
    {"train", "test"}), good ({"train", "test"} of the protocol), test_good_from, ratio,
    mask_threshold, verified, warnings (empty masks, defects without masks, varying sizes...).
    Raises DataError / ConfigError for unreadable data or bad options.
    """
    if category is not None:
        datasets = [load_dataset(path, category, data_format, mask_threshold)]
    else:
        datasets = load_datasets(path, data_format, mask_threshold)
    return [category_info(ds, ratio, verify=verify, progress=progress, holdout=holdout, seed=seed)
            for ds in datasets]


def format_info_table(infos: list[dict]) -> str:
    """Aligned human-readable tables, one block per category."""
    blocks = []
    for info in infos:
        rows = [("split/type", "images", "few-shot train", "few-shot test")]
        for key, n in info["counts"].items():
            dtype = key.split("/", 1)[1]
            fs = info["few_shot"].get(dtype) if dtype != GOOD else None
            rows.append((key, str(n), str(fs["train"]) if fs else "", str(fs["test"]) if fs else ""))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = [f"{info['category']}  [{info['format']}]  {info['root']}"]
        for r in rows:
            cells = [c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)]
            lines.append("  " + "  ".join([r[0].ljust(widths[0])] + cells)
                         .rstrip())
        good = info["good"]
        lines.append(f"  good images for the protocol: {good['train']} train, {good['test']} test "
                     f"(test normals: {info['test_good_from']})")
        lines.append(f"  warnings: {len(info['warnings'])}" + (" (listed on stderr)" if info["warnings"] else ""))
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
