"""GAA ablation: does ARS filtering, and does sub-type clustering, raise pixel AP and accuracy?

On one category, with the best model-free generator (croppaste by default) and one benchmark
profile (cpu by default), trains and tests three models on the same protocol:
  METHOD            - n pairs per type, as generated (the plain baseline);
  METHOD+ars        - 2n pairs per type generated, the best n per type kept by ARS ranked per type
                      (GAA's filter as published, `filter --stratify type`, 1000:500 by default);
  METHOD+ars-by-source - the same 2n pairs, the budget of each type shared over the real defects
                      the pairs came from (`filter`'s default, `--stratify source`), n per type kept;
  METHOD+subtypes   - n pairs per type with `--subtypes auto` (anomaly-concept clustering, the
                      sub-types sharing their type's budget and scored as their type).
The same public functions as the CLI are used (generate_run, filter_run, run_benchmark), so the
figures are what `anomalyforge generate/filter/benchmark` give. Writes OUT/ablation.json (config,
figures and deltas against the baseline) and the benchmark's own results.json and report.html.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_gaa_ablation.py \
        --data ../shared/datasets/magnetic_tile --out /tmp/af_abl_mtile
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--category", default=None)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--method", default="croppaste")
    p.add_argument("--profile", default="cpu")
    p.add_argument("--n", type=int, default=500, help="pairs per defect type each model trains on")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)

    from anomalyforge.pipelines.benchmark import format_results_table, run_benchmark
    from anomalyforge.quality.filter import filter_run
    from anomalyforge.synth.run import generate_run

    progress = not a.no_progress
    out: Path = a.out
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    ars_run, sub_run = out / "runs_ablation" / "ars", out / "runs_ablation" / "subtypes"
    generate_run(a.data, ars_run, method=a.method, n=2 * a.n, category=a.category, seed=a.seed,
                 progress=progress)
    timings["generate_2n_s"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    filt = filter_run(ars_run, keep=a.n, seed=a.seed, progress=progress, stratify="type")
    timings["filter_s"] = round(time.perf_counter() - t0, 1)
    src_run = out / "runs_ablation" / "ars-by-source"
    if not (src_run / "run.json").is_file():  # same pairs and scores (hard links), re-selected
        shutil.rmtree(src_run, ignore_errors=True)
        shutil.copytree(ars_run, src_run, copy_function=os.link)
    filt_src = filter_run(src_run, keep=a.n, seed=a.seed, progress=progress, stratify="source")
    t0 = time.perf_counter()
    generate_run(a.data, sub_run, method=a.method, n=a.n, category=a.category, seed=a.seed,
                 progress=progress, subtypes="auto")
    timings["generate_subtypes_s"] = round(time.perf_counter() - t0, 1)
    clusters = {}
    cfile = sub_run / "clusters" / "clusters.json"
    if cfile.is_file():
        doc = json.loads(cfile.read_text())
        clusters = {t: len(v) for t, v in doc.get("clusters", {}).items()}

    bench = out / "benchmark"
    labels = {f"{a.method}+ars": ars_run, f"{a.method}+ars-by-source": src_run, f"{a.method}+subtypes": sub_run}
    t0 = time.perf_counter()
    res = run_benchmark(a.data, bench, [a.method], category=a.category, profile=a.profile, seed=a.seed,
                        n=a.n, runs=labels, progress=progress)
    timings["benchmark_s"] = round(time.perf_counter() - t0, 1)

    rows = {}
    for label, entry in res["methods"].items():
        px = entry.get("localization", {}).get("pixel", {})
        img = entry.get("localization", {}).get("image", {})
        rows[label] = {"pixel_auroc": px.get("auroc"), "pixel_ap": px.get("ap"), "pixel_f1_max": px.get("f1_max"),
                       "aupro": px.get("aupro"), "image_auroc": img.get("auroc"),
                       "accuracy": (entry.get("classification") or {}).get("accuracy")}
    base = rows.get(a.method, {})
    deltas = {label: {k: (None if v is None or base.get(k) is None else round(100 * (v - base[k]), 2))
                      for k, v in r.items()} for label, r in rows.items() if label != a.method}
    doc = {"config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(a).items()},
           "category": res.get("category"), "filter": filt.get("counts"),
           "filter_by_source": filt_src.get("counts"), "subtypes": clusters,
           "metrics": rows, "delta_points_vs_baseline": deltas, "timings": timings}
    tmp = out / "ablation.json.tmp"
    tmp.write_text(json.dumps(doc, indent=2))
    tmp.replace(out / "ablation.json")
    print(format_results_table(res))
    print(json.dumps({"delta_points_vs_baseline": deltas, "subtypes": clusters}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
