"""Helpers shared by the quality tests (imported by name, unlike conftest.py)."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import numpy as np

from anomalyforge.quality.ars import ARSConfig

# Small but real: SimpleNet's recipe at 128 px with fewer steps and a narrower MLP (fast session).
SMALL_ARS = ARSConfig(size=128, steps=100, hidden=256, batch_features=512, max_images=12)


@contextlib.contextmanager
def one_thread():
    """Run torch and OpenMP/BLAS at the session's thread count (1 by default), then restore. On the
    shared 2-core test machine,
    two-thread ops stall whenever another process holds a core (measured: the small ARS training
    loop took 15-30 s instead of 0.5 s); one thread is faster here and fairer to the others."""
    from afthreads import pinned

    with pinned():  # ANOMALYFORGE_TEST_THREADS (default 1); OpenMP/BLAS pools (scikit-learn KMeans) too
        yield


def shifted(mask: np.ndarray) -> np.ndarray:
    """The mask rotated by 180 degrees with its original area removed: same shape, elsewhere."""
    out = np.rot90(mask, 2).copy()
    out[mask > 0] = 0
    return out


def copy_cache(cache: Path, run: Path) -> None:
    shutil.copytree(cache, run / "ars")
