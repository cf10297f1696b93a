"""Fixtures for the inspection tests: the real bottle few-shot split and crop-paste pairs.

The split comes from `anomalyforge.data` (lowest-numbered third of each defect type). Pairs are
real few-shot defects pasted onto good training images (numpy), so models are
trained on realistic data without depending on the synthesis package.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from anomalyforge.data.fitdata import FitData
from anomalyforge.data.types import FewShotSplit
from anomalyforge.inspect.pairs import GeneratedPairs
from inspectdata import croppaste  # noqa: E402,F401  (re-exported for fixtures)


@pytest.fixture(scope="session")
def bottle_split(bottle_dir: Path) -> FewShotSplit:
    from anomalyforge.data import few_shot_split, load_dataset

    return few_shot_split(load_dataset(bottle_dir), progress=False)


@pytest.fixture(scope="session")
def bottle_fit64(bottle_split: FewShotSplit) -> FitData:
    """Few-shot bottle training data at 64 px with 12 good images (smoke scale)."""
    return FitData(bottle_split.category, 64, bottle_split.train_defects, bottle_split.train_good[:12])


@pytest.fixture(scope="session")
def bottle_pairs64(bottle_fit64: FitData) -> GeneratedPairs:
    return croppaste(bottle_fit64, 6, seed=0)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """The session's torch thread count (1 unless ANOMALYFORGE_TEST_THREADS says otherwise) for every
    test here, even one that changed it: on the shared, oversubscribed CI machine two threads spend
    most of their time waiting for each other. Module-scoped fixtures that train use `pinned()`
    themselves (they run before this function-scoped fixture)."""
    from afthreads import pinned

    with pinned():
        yield
