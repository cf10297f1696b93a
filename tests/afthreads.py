"""Thread count for the test session (a uniquely named helper module, importable from any test
folder): `ANOMALYFORGE_TEST_THREADS` (default 1). The suite must pass at 1 and 2 threads; every
fixture that trains runs under `pinned()`, whatever its scope."""

from __future__ import annotations

import contextlib
import os


def threads() -> int:
    return max(1, int(os.environ.get("ANOMALYFORGE_TEST_THREADS", "1")))


@contextlib.contextmanager
def pinned(n: int | None = None):
    """torch (and OpenMP/BLAS pools) at `n` threads (default: the session's), then restored."""
    import torch
    from threadpoolctl import threadpool_limits

    n = threads() if n is None else n
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with threadpool_limits(limits=n):
            yield
    finally:
        torch.set_num_threads(before)
