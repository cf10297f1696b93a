"""anomalyforge.inspect: downstream inspection models and the honest benchmark.

    from anomalyforge.inspect import run_benchmark
    run_benchmark("datasets/mvtec_ad/bottle", "bench/bottle", ["croppaste", "patchcore"], profile="cpu")

Modules: `profiles` (smoke / cpu / paper settings), `models` (feature_head, lite_unet,
draem_unet), `train` (leak-free training on generated pairs), `classify` (defect-type
classifier), `patchcore` (no-synthesis baseline), `evaluate` (the one place the test split is
read), `benchmark` (results.json + maps.npz), `backbone` (pretrained feature extractors).
Heavy submodules are imported on first use.
"""

from __future__ import annotations

from typing import Any

__all__ = ["run_benchmark", "get_profile", "PROFILES", "format_results_table"]


def __getattr__(name: str) -> Any:
    if name in ("run_benchmark", "format_results_table"):
        from anomalyforge.inspect import benchmark

        return getattr(benchmark, name)
    if name in ("get_profile", "PROFILES"):
        from anomalyforge.inspect import profiles

        return getattr(profiles, name)
    raise AttributeError(name)
