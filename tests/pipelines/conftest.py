"""The pipeline tests run at the session's thread count (see `one_torch_thread`)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield
