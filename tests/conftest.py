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


DATA_FIXTURES = frozenset({"datasets_root", "bottle_dir", "juice_dir", "mtile_dir"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that read ../shared (directly or through a fixture) are `integration`, the rest `unit`:
    `scripts/test.sh -m unit` runs the fast tests on tiny fixtures alone."""
    for item in items:
        uses_data = DATA_FIXTURES & set(getattr(item, "fixturenames", ()))
        item.add_marker(pytest.mark.integration if uses_data else pytest.mark.unit)


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


@pytest.fixture
def one_torch_thread():
    """One torch thread for the test: on the shared, oversubscribed CI machine two threads
    spend most of their time waiting for each other. Restored afterwards (not global)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def bottle_split(bottle_dir: Path):
    """The real bottle few-shot split (lowest-numbered third of each defect type)."""
    from anomalyforge.data import few_shot_split, load_dataset

    return few_shot_split(load_dataset(bottle_dir), progress=False)


@pytest.fixture(scope="session")
def bottle_fit64(bottle_split):
    """Few-shot bottle training data at 64 px with 12 good images (smoke scale)."""
    from anomalyforge.data.fitdata import FitData

    return FitData(bottle_split.category, 64, bottle_split.train_defects, bottle_split.train_good[:12])


@pytest.fixture(scope="session")
def bottle_pairs64(bottle_fit64):
    """Real few-shot defects pasted onto good training images (numpy, no synthesis package)."""
    from inspectdata import croppaste

    return croppaste(bottle_fit64, 6, seed=0)
