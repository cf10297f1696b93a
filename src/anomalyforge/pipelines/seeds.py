"""The benchmark over several seeds: how much of a difference between methods is the seed's?

One benchmark run fixes one seed for everything random (generation, training draws, coreset
subsample, classifier batches). On a test split of a few dozen defects one seed can move a figure
by points (one bottle test defect is 2.4 points of accuracy), so a lift claimed from one run may be
noise. `run_benchmark_seeds` runs the same benchmark once per seed, each in `<out>/seed-<s>/`
(each resumable on its own, each reading the test split once, nothing chosen by a test score), then
`summarize_seeds` gives every figure's mean, standard deviation, minimum and maximum over the
seeds, and, when the PatchCore baseline is among the methods, each method's paired difference to
it (same seed, same test split) with the number of seeds on which the method was ahead.
Written to `<out>/summary.json` and `<out>/summary.html`.

With `backend="ray"` each seed's benchmark is one Ray task with its own CPU / GPU budget
(`pipelines.distributed.RayOptions`), on this machine or a cluster; the results are the same.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from anomalyforge import __version__
from anomalyforge.atomic import check_output_dir, write_json_atomic
from anomalyforge.errors import ConfigError
from anomalyforge.inspect.profiles import Profile, get_profile
from anomalyforge.pipelines.benchmark import BASELINES, run_benchmark
from anomalyforge.pipelines.distributed import RayOptions, check_backend, map_on_ray
from anomalyforge.report.seeds import write_seeds_report

SUMMARY = "summary.json"
# figure name -> where it sits in a method's entry of results.json (values are fractions, IS is not)
METRICS: dict[str, tuple[str, ...]] = {
    "pixel_auroc": ("localization", "pixel", "auroc"),
    "pixel_ap": ("localization", "pixel", "ap"),
    "pixel_f1_max": ("localization", "pixel", "f1_max"),
    "pixel_aupro": ("localization", "pixel", "aupro"),
    "image_auroc": ("localization", "image", "auroc"),
    "image_ap": ("localization", "image", "ap"),
    "accuracy": ("classification", "accuracy"),
    "is": ("generation", "is"),
    "ic_lpips": ("generation", "ic_lpips"),
}


def seed_dir(out: Path, seed: int) -> Path:
    """Where the benchmark of one seed lives."""
    return Path(out) / f"seed-{seed}"


def _value(entry: dict, path: tuple[str, ...]) -> float | None:
    v: Any = entry
    for k in path:
        if not isinstance(v, dict) or v.get(k) is None:
            return None
        v = v[k]
    return float(v)


def _stats(values: list[float | None]) -> dict | None:
    """mean / sd (n − 1) / min / max of the seeds that have the figure; None when none has it."""
    vals = np.array([v for v in values if v is not None], float)
    if not vals.size:
        return None
    return {"values": [None if v is None else float(v) for v in values], "n": int(vals.size),
            "mean": float(vals.mean()), "sd": float(vals.std(ddof=1)) if vals.size > 1 else 0.0,
            "min": float(vals.min()), "max": float(vals.max())}


def summarize_seeds(docs: dict[int, dict]) -> dict:
    """Spread over seeds of every figure of every method, from {seed: results.json document}.

    `paired` (when a baseline is present): per method and figure, the differences method − baseline
    seed by seed, their mean / sd / min / max, and `ahead`, the number of seeds where it was > 0."""
    if not docs:
        raise ConfigError("no seeds to summarize")
    seeds = sorted(docs)
    methods = list(dict.fromkeys(m for s in seeds for m in docs[s].get("methods", {})))
    missing = [(s, m) for s in seeds for m in methods if docs[s]["methods"].get(m, {}).get("status") != "done"]
    if missing:
        s, m = missing[0]
        raise ConfigError(f"seed {s}: method {m!r} has no finished result; re-run the benchmark to finish it")
    figures = {m: {k: _stats([_value(docs[s]["methods"][m], p) for s in seeds]) for k, p in METRICS.items()}
               for m in methods}
    baseline = next((m for m in methods if m in BASELINES), None)
    paired: dict[str, dict] = {}
    if baseline is not None:
        for m in methods:
            if m == baseline:
                continue
            paired[m] = {}
            for k in METRICS:
                a, b = figures[m][k], figures[baseline][k]
                if a is None or b is None:
                    continue
                diffs = [None if x is None or y is None else x - y
                         for x, y in zip(a["values"], b["values"], strict=True)]
                st = _stats(diffs)
                if st is not None:
                    st["ahead"] = int(sum(d > 0 for d in diffs if d is not None))
                    paired[m][k] = st
    first = docs[seeds[0]]
    return {"category": first.get("category"), "profile": first.get("profile"), "config": first.get("config"),
            "split": first.get("split"), "seeds": seeds, "methods": methods,
            "models": {m: docs[seeds[0]]["methods"][m].get("model") for m in methods},
            "figures": figures, "baseline": baseline, "paired": paired}


def _check_seeds(seeds) -> list[int]:
    out = []
    for s in seeds:
        if not isinstance(s, (int, np.integer)) or isinstance(s, bool) or s < 0:
            raise ConfigError(f"seeds must be non-negative integers, got {s!r}")
        out.append(int(s))
    if len(out) < 2:
        raise ConfigError(f"give at least two seeds to see their spread, got {out}")
    if len(set(out)) != len(out):
        raise ConfigError(f"seeds repeat: {out}")
    return out


def run_benchmark_seeds(data: Path, out: Path, methods: list[str], seeds: list[int], category: str | None = None,
                        profile: str | Profile = "cpu", n: int | None = None, data_format: str | None = None,
                        progress: bool = True, backend: str = "local", ray: RayOptions | None = None) -> dict:
    """`run_benchmark` once per seed into `<out>/seed-<s>/`, then the summary over seeds (see module
    doc); returns the summary, also written to `<out>/summary.json` and `<out>/summary.html`.

    `backend="ray"` runs one Ray task per seed (`ray`: address and budget per task). An
    interrupted call resumes: finished seeds and methods are skipped."""
    seeds = _check_seeds(seeds)
    prof = get_profile(profile)
    check_backend(backend)
    check_output_dir(out, [data])
    docs: dict[int, dict] = {}
    if backend == "ray":
        data, out = Path(data).absolute(), Path(out).absolute()  # the workers' cwd may differ
        calls = [dict(data=data, out=seed_dir(out, s), methods=methods, category=category, profile=prof, seed=s,
                      n=n, data_format=data_format, progress=False) for s in seeds]
        docs = dict(zip(seeds, map_on_ray(run_benchmark, calls, ray, progress=progress, desc="seeds"), strict=True))
    for s in seeds:
        if s not in docs:
            docs[s] = run_benchmark(data, seed_dir(out, s), methods, category=category, profile=prof, seed=s, n=n,
                                    data_format=data_format, progress=progress)
    summary = summarize_seeds(docs)
    summary["data"] = str(Path(data).resolve())
    summary["created"] = datetime.now(UTC).isoformat(timespec="seconds")
    summary["version"] = __version__
    write_json_atomic(Path(out) / SUMMARY, summary)

    write_seeds_report(Path(out))
    return summary


def format_seeds_table(summary: dict) -> str:
    """Plain-text table: method x figures as mean ± sd over seeds (in %; IS as is)."""
    cols = [("pixel_auroc", "pxAUROC"), ("pixel_ap", "pxAP"), ("pixel_aupro", "AUPRO"),
            ("image_auroc", "imAUROC"), ("accuracy", "acc"), ("is", "IS")]

    def cell(st: dict | None, key: str) -> str:
        if st is None:
            return "-"
        if key == "is":
            return f"{st['mean']:.2f}±{st['sd']:.2f}"
        return f"{100 * st['mean']:.1f}±{100 * st['sd']:.1f}"

    lines = [f"{summary.get('category')} | profile {summary.get('profile')} | seeds "
             f"{','.join(str(s) for s in summary['seeds'])} (mean ± sd)",
             f"{'method':<16}" + "".join(f"{h:>13}" for _, h in cols)]
    for m in summary["methods"]:
        lines.append(f"{m:<16}" + "".join(f"{cell(summary['figures'][m][k], k):>13}" for k, _ in cols))
    base = summary.get("baseline")
    for m, figs in summary.get("paired", {}).items():
        parts = [f"{h} {100 * figs[k]['mean']:+.1f} [{100 * figs[k]['min']:+.1f}, {100 * figs[k]['max']:+.1f}] "
                 f"ahead {figs[k]['ahead']}/{figs[k]['n']}" for k, h in cols if k in figs and k != "is"]
        if parts:
            lines.append(f"{m} - {base}: " + "; ".join(parts))
    return "\n".join(lines)
