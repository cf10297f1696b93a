"""Small real-data layouts for the synthesis tests (real files linked, fewer of them)."""

from __future__ import annotations

import os
from pathlib import Path


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(src, dst)


def make_small_mvtec(src: Path, dst: Path, n_good: int = 8, n_defect: int = 3,
                     types: tuple[str, ...] | None = None) -> Path:
    """Link the first images of a real MVTec AD category into `dst` (same layout, fewer files)."""
    for p in sorted((src / "train" / "good").glob("*.png"))[:n_good]:
        _link(p, dst / "train" / "good" / p.name)
    for p in sorted((src / "test" / "good").glob("*.png"))[:2]:
        _link(p, dst / "test" / "good" / p.name)
    for tdir in sorted((src / "test").iterdir()):
        if tdir.name == "good" or (types and tdir.name not in types):
            continue
        for p in sorted(tdir.glob("*.png"))[:n_defect]:
            _link(p, dst / "test" / tdir.name / p.name)
            m = src / "ground_truth" / tdir.name / f"{p.stem}_mask.png"
            _link(m, dst / "ground_truth" / tdir.name / m.name)
    return dst


def make_small_loco(src: Path, dst: Path, good: tuple[str, ...], defects: tuple[str, ...],
                    kind: str = "logical_anomalies") -> Path:
    """Link chosen real MVTec LOCO good images and defects (merged masks) into `dst`."""
    for g in good:
        _link(src / "train" / "good" / f"{g}.png", dst / "train" / "good" / f"{g}.png")
    for g in good[:2]:
        _link(src / "validation" / "good" / f"{g}.png", dst / "validation" / "good" / f"{g}.png")
    for d in defects:
        _link(src / "test" / kind / f"{d}.png", dst / "test" / kind / f"{d}.png")
        _link(src / "ground_truth" / kind / f"{d}.png", dst / "ground_truth" / kind / f"{d}.png")
    return dst
