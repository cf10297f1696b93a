"""Reading a finished benchmark folder: results.json, per-method maps.npz and generated runs.

Everything except results.json itself is optional: a missing or unreadable piece comes back as
None plus a short note, so the report can say what is missing instead of crashing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from anomalyforge.errors import DataError
from anomalyforge.formats.manifest import MANIFEST, read_pairs
from anomalyforge.formats.results import RESULTS_JSON, BenchmarkResults

RESULTS_FILE = RESULTS_JSON


def load_results(bench_dir: Path) -> dict:
    """`<bench_dir>/results.json` (read and checked by `formats.results.BenchmarkResults`) as the
    dict the report templates use; DataError naming the file when it is missing or malformed."""
    bench_dir = Path(bench_dir)
    if not bench_dir.is_dir():
        raise DataError(bench_dir, "not a folder" if bench_dir.exists() else "benchmark folder not found")
    return BenchmarkResults.read(bench_dir / RESULTS_FILE).to_dict()


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
    """The kept pairs of a generated run (the one manifest reader, `formats.manifest.read_pairs`:
    pairs the ARS filter rejected are left out, a torn last line is ignored), or ([], note) when
    the run is absent or unreadable."""
    path = Path(run_dir) / MANIFEST
    if not path.is_file():
        return [], f"No generated run found ({path})"
    try:
        return [r.to_dict() for r in read_pairs(run_dir)], None
    except DataError as exc:
        return [], str(exc)
