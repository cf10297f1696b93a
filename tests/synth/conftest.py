"""Small real-data fixtures for the synthesis tests: a few bottle images linked into a temp
MVTec AD layout (the real files, fewer of them, so runs take a second)."""

from __future__ import annotations

from pathlib import Path

import pytest
from synthdata import make_small_mvtec


@pytest.fixture(scope="session")
def small_bottle(bottle_dir: Path, tmp_path_factory) -> Path:
    """bottle with 8 good training images and 3 images of each defect type (real files)."""
    return make_small_mvtec(bottle_dir, tmp_path_factory.mktemp("data") / "bottle")
