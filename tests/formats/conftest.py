"""A small copy of real bottle data (the real files, linked) that a test may change: a changed file
replaces its link, never the shared dataset."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def link_bottle(src: Path, dst: Path, n_good: int = 6, n_defect: int = 3,
                types: tuple[str, ...] = ("broken_large", "contamination")) -> Path:
    """The first images of bottle linked into `dst` in its MVTec AD layout."""
    def link(a: Path, b: Path) -> None:
        b.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(a, b)

    for p in sorted((src / "train" / "good").glob("*.png"))[:n_good]:
        link(p, dst / "train" / "good" / p.name)
    for p in sorted((src / "test" / "good").glob("*.png"))[:2]:
        link(p, dst / "test" / "good" / p.name)
    for t in types:
        for p in sorted((src / "test" / t).glob("*.png"))[:n_defect]:
            link(p, dst / "test" / t / p.name)
            link(src / "ground_truth" / t / f"{p.stem}_mask.png", dst / "ground_truth" / t / f"{p.stem}_mask.png")
    return dst


@pytest.fixture
def small_bottle(bottle_dir: Path, tmp_path: Path) -> Path:
    return link_bottle(bottle_dir, tmp_path / "data" / "bottle")
