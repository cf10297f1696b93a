"""anomalyforge.report: the self-contained HTML report of a finished benchmark.

`write_report(bench_dir, out=None)` lives in `anomalyforge.report.html`; it is exposed here lazily
so importing the package (e.g. for `anomalyforge.report.preview`) does not load matplotlib.
"""

from __future__ import annotations

from typing import Any

__all__ = ["write_report"]


def __getattr__(name: str) -> Any:
    if name == "write_report":
        from anomalyforge.report.html import write_report

        return write_report
    raise AttributeError(f"module 'anomalyforge.report' has no attribute {name!r}")
