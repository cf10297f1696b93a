"""Shared fixtures: the real datasets in ../shared/datasets (never copied into the repo).

When the folder exists, tests must use it. When the whole folder is absent (for example in a
user's own checkout) a test that needs it skips and says so -- unless missing data is declared an
error: in CI (`CI=true`), with `ANOMALYFORGE_REQUIRE_DATA=1` or with `pytest --require-data`,
the run stops before any test with one line naming the missing folder (a green run without
the end-to-end tests would prove nothing).

Every test that reads the real data (through the fixtures below) is marked `integration`, so
`-m "not integration"` (or `-m unit`) selects the unit tests that need no data.

Threads: torch runs `ANOMALYFORGE_TEST_THREADS` threads (default 1) for the whole session,
set before any fixture -- module- and session-scoped fixtures that train included -- so
results and timings do not depend on the machine's core count. The suite must pass at 1 and 2.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("ANOMALYFORGE_DATASETS", REPO.parent / "shared" / "datasets"))
DATA_FIXTURES = frozenset({"datasets_root", "bottle_dir", "juice_dir", "mtile_dir"})
_TRUE = {"1", "true", "yes", "on"}
pytest_plugins = ["modelfixture"]  # the session's trained bottle model (train/predict and deploy tests)


def pytest_addoption(parser):
    parser.addoption("--require-data", action="store_true", default=False,
                     help="missing real datasets (../shared/datasets) are an error, not a skip "
                          "(default in CI=true or with ANOMALYFORGE_REQUIRE_DATA=1)")


def data_required(config) -> bool:
    """Whether missing real data is an error (CI, env switch or --require-data)."""
    return bool(config.getoption("--require-data")
                or os.environ.get("CI", "").strip().lower() in _TRUE
                or os.environ.get("ANOMALYFORGE_REQUIRE_DATA", "").strip().lower() in _TRUE)


def pytest_collection_modifyitems(config, items):
    needs_data = [it for it in items if DATA_FIXTURES & set(getattr(it, "fixturenames", ()))]
    for it in items:
        it.add_marker(pytest.mark.integration if it in needs_data else pytest.mark.unit)
    if needs_data and not DATASETS.is_dir() and data_required(config):
        pytest.exit(f"ERROR: real datasets not found at {DATASETS}: {len(needs_data)} selected tests need them "
                    f"(missing data is an error in CI / with --require-data; set ANOMALYFORGE_DATASETS)",
                    returncode=4)


@pytest.fixture(scope="session", autouse=True)
def _pin_torch_threads():
    """Session-wide torch thread count (see the module docstring); restored at the end."""
    from afthreads import pinned

    with pinned():
        yield


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
    """The session's thread count for this test, even if an earlier test changed it."""
    from afthreads import pinned

    with pinned():
        yield


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
