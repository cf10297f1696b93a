"""Reading a finished benchmark folder: results.json, per-method maps.npz and generated runs.

Everything except results.json itself is optional: a missing or unreadable piece comes back as
None plus a short note, so the report can say what is missing instead of crashing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from anomalyforge.errors import DataError

RESULTS_FILE = "results.json"


def load_results(bench_dir: Path) -> dict:
    """Parse `<bench_dir>/results.json`; DataError naming the file when it is missing or malformed."""
    bench_dir = Path(bench_dir)
    if not bench_dir.is_dir():
        raise DataError(bench_dir, "not a folder" if bench_dir.exists() else "benchmark folder not found")
    path = bench_dir / RESULTS_FILE
    if not path.is_file():
        raise DataError(path, "no results.json: not a finished benchmark folder")
    try:
        res = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(path, f"not valid JSON ({exc})") from None
    if not isinstance(res, dict):
        raise DataError(path, "expected a JSON object at the top level")
    methods = res.get("methods")
    if not isinstance(methods, dict):
        raise DataError(path, "missing the 'methods' object")
    for name, m in methods.items():
        if not isinstance(m, dict):
            raise DataError(path, f"method {name!r}: expected an object")
    return res


@dataclass
class Maps:
    """Per-test-image predictions of one method (see the benchmark's maps.npz)."""

    maps: np.ndarray  # (N, S, S) float32
    masks: np.ndarray  # (N, S, S) bool
    labels: np.ndarray  # (N,) int, 1 = defect
    types: np.ndarray  # (N,) str
    paths: np.ndarray  # (N,) str
    image_scores: np.ndarray  # (N,) float
    cls_pred: np.ndarray | None = None
    cls_true: np.ndarray | None = None


_REQUIRED = ("maps", "masks", "labels", "types", "paths", "image_scores")


def load_maps(path: Path) -> tuple[Maps | None, str | None]:
    """(Maps, None) or (None, note) when the file is missing or not in the expected shape."""
    path = Path(path)
    if not path.is_file():
        return None, f"{path.name} not found ({path})"
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in _REQUIRED if k not in z.files]
            if missing:
                return None, f"{path}: missing arrays {', '.join(missing)}"
            d = {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        return None, f"{path}: cannot read ({exc.__class__.__name__}: {exc})"
    maps = d["maps"].astype(np.float32)
    n = len(maps)
    if maps.ndim != 3 or d["masks"].shape != maps.shape or any(len(d[k]) != n for k in _REQUIRED):
        return None, f"{path}: arrays have inconsistent shapes"
    opt = {k: (d[k].astype(str) if k in d else None) for k in ("cls_pred", "cls_true")}
    return Maps(maps=maps, masks=d["masks"] > 0, labels=d["labels"].astype(int),
                types=d["types"].astype(str), paths=d["paths"].astype(str),
                image_scores=d["image_scores"].astype(np.float64), **opt), None


def load_manifest(run_dir: Path) -> tuple[list[dict], str | None]:
    """Records of a generated run's manifest.jsonl, or ([], note) when absent/unreadable."""
    path = Path(run_dir) / "manifest.jsonl"
    if not path.is_file():
        return [], f"No generated run found ({path})"
    records: list[dict] = []
    try:
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                rec = json.loads(line)
                if not isinstance(rec, dict) or "image" not in rec or "mask" not in rec:
                    return records, f"{path}:{i}: record without image/mask"
                records.append(rec)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return records, f"{path}: not valid JSON lines ({exc})"
    return records, None
