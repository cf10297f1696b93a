"""Published downstream numbers from the papers, to show beside this benchmark's own.

Only numbers read from the papers are listed; anything not listed is shown as "—" in the report.
Values are percentages as printed in the papers. They come from GPU runs of the official code,
which leaked a training image into the test set and selected checkpoints on test scores, so they
are an upper reference, not a like-for-like comparison with the leak-free protocol used here.
"""

from __future__ import annotations

from pathlib import PurePath

# Columns the published table shows (key -> header).
COLUMNS: dict[str, str] = {
    "pixel_auroc": "pixel AUROC",
    "pixel_ap": "pixel AP",
    "accuracy": "classification acc.",
}

CAVEAT = ("Published numbers come from GPU runs whose official code leaked a training image into "
          "the test set and selected checkpoints on test scores; they are not comparable one-to-one "
          "with this leak-free few-shot benchmark.")

_SOURCE = "AnomalyDiffusion (Hu et al., AAAI 2024) Tab. / GAA (2025) Tab."

# dataset/category -> list of rows: method, what the row measures, metric values (percent), source.
PUBLISHED: dict[str, list[dict]] = {
    "mvtec_ad/bottle": [
        {"method": "DRAEM-generated", "setting": "U-Net trained on generated data",
         "pixel_auroc": 96.7, "pixel_ap": 80.2, "source": _SOURCE},
        {"method": "Crop&Paste", "setting": "U-Net trained on generated data",
         "pixel_auroc": 94.5, "pixel_ap": 67.4, "source": _SOURCE},
        {"method": "AnomalyDiffusion", "setting": "U-Net trained on generated data",
         "pixel_auroc": 99.4, "pixel_ap": 94.1, "accuracy": 90.7, "source": _SOURCE},
        {"method": "GAA", "setting": "U-Net trained on generated data",
         "pixel_auroc": 99.7, "pixel_ap": 96.2, "accuracy": 95.4, "source": _SOURCE},
    ],
}

# Names a dataset goes by (format names of anomalyforge.data, usual download folder names).
_ALIASES: dict[str, tuple[str, ...]] = {
    "mvtec_ad": ("mvtec_ad", "mvtec", "mvtecad", "mvtec_anomaly_detection", "mvtec-ad"),
    "mvtec_loco": ("mvtec_loco", "mvtec_loco_anomaly_detection", "mvtec-loco", "loco"),
    "mvtec3d": ("mvtec3d", "mvtec_3d", "mvtec_3d_anomaly_detection", "mvtec-3d"),
    "visa": ("visa", "visa_pytorch"),
    "btad": ("btad", "btech"),
    "magnetic_tile": ("magnetic_tile", "magnetic-tile-defect", "magnetic_tile_defect"),
}


def dataset_key(*hints: str | None) -> str | None:
    """Canonical dataset name from a format name or a data path (first hint that identifies one)."""
    for hint in hints:
        if not hint:
            continue
        text = str(hint).strip().lower()
        for name, aliases in _ALIASES.items():
            if text in aliases:
                return name
        # a path: the nearest folder named like a dataset wins (…/mvtec_loco/juice_bottle)
        for part in reversed(PurePath(text).parts):
            for name, aliases in _ALIASES.items():
                if part in aliases:
                    return name
    return None


def published_for(category: str, *hints: str | None) -> tuple[str | None, list[dict]]:
    """(key, rows) of published numbers for a category; rows are empty when none are known.

    `hints` are the data format and/or the data path from results.json, used to tell the
    dataset apart (the same category name can exist in several datasets).
    """
    ds = dataset_key(*hints)
    if ds is None:
        return None, []
    key = f"{ds}/{category.lower()}"
    return key, [dict(r) for r in PUBLISHED.get(key, [])]
