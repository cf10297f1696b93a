"""Fixtures of tests/data: small synthetic layouts in tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest
from datalayouts import make_mvtec


@pytest.fixture
def mvtec_cat(tmp_path: Path) -> Path:
    return make_mvtec(tmp_path / "ds" / "widget")
