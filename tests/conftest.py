"""Shared fixtures: the real datasets in ../shared/datasets (never copied into the repo).

When the folder exists, tests must use it; a test that needs data skips only when the whole
folder is absent (for example in a user's own checkout), and then says so.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("ANOMALYFORGE_DATASETS", REPO.parent / "shared" / "datasets"))


def _need(path: Path) -> Path:
    if not DATASETS.is_dir():
        pytest.skip(f"real datasets not found at {DATASETS}")
    assert path.is_dir(), f"{path} missing although {DATASETS} exists"
    return path


@pytest.fixture(scope="session")
def datasets_root() -> Path:
    return _need(DATASETS)


@pytest.fixture(scope="session")
def bottle_dir() -> Path:
    """MVTec AD bottle (512x512 RGB)."""
    return _need(DATASETS / "mvtec_ad" / "bottle")


@pytest.fixture(scope="session")
def juice_dir() -> Path:
    """MVTec LOCO juice_bottle (partial: logical anomalies, merged masks)."""
    return _need(DATASETS / "mvtec_loco" / "juice_bottle")


@pytest.fixture(scope="session")
def mtile_dir() -> Path:
    """Magnetic Tile (grey JPG + soft PNG masks)."""
    return _need(DATASETS / "magnetic_tile")
