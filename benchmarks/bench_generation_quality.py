"""Generation quality of each synthesis method on one category: Inception Score and IC-LPIPS.

Generates n pairs per defect type with every method (seeded, resumable: an existing run folder is
reused) and scores them the way `anomalyforge quality RUN` does (default offline models:
EfficientNet-Lite0 ImageNet classifier for IS, LPIPS-style distance on its features for
IC-LPIPS; `--classifier inception_v3 --lpips vgg` for the papers' models where their weights are
available). Writes OUT/generation_quality.json (config, per method: overall and per-type IS / IC-LPIPS, timings).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_generation_quality.py \
        --data ../shared/datasets/mvtec_ad/bottle --out /tmp/af_genq_bottle
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

METHODS = "croppaste,nsa,perlin,cutpaste,cutpaste-scar"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--category", default=None)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--methods", default=METHODS)
    p.add_argument("--n", type=int, default=500, help="pairs per defect type")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--classifier", default="efficientnet-lite0")
    p.add_argument("--lpips", default="efficientnet-lite0")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)

    from anomalyforge.quality.generation import QualityConfig, format_quality_table, score_run
    from anomalyforge.synth.run import generate_run

    progress = not a.no_progress
    cfg = QualityConfig(classifier=a.classifier, lpips=a.lpips, size=a.size, seed=a.seed)
    out: Path = a.out
    out.mkdir(parents=True, exist_ok=True)
    doc = {"data": str(a.data.resolve()), "category": a.category, "n": a.n, "size": a.size, "seed": a.seed,
           "quality_config": cfg.identity(), "methods": {}}
    for method in [m.strip() for m in a.methods.split(",") if m.strip()]:
        run = out / "runs" / method
        t0 = time.perf_counter()
        generate_run(a.data, run, method=method, n=a.n, category=a.category, seed=a.seed, size=a.size,
                     progress=progress)
        t1 = time.perf_counter()
        q = score_run(run, cfg, progress=progress)
        t2 = time.perf_counter()
        print(f"\n== {method}\n{format_quality_table(q)}", flush=True)
        doc["methods"][method] = {
            "is": q["all"].get("is"), "is_std": q["all"].get("is_std"), "ic_lpips": q["all"].get("ic_lpips"),
            "references_is": q["references"].get("is"),
            "types": {t: {k: e.get(k) for k in ("n", "is", "is_std", "ic_lpips", "clusters")}
                      for t, e in q["types"].items()},
            "timings": {"generate_s": round(t1 - t0, 1), "quality_s": round(t2 - t1, 1)}}
        tmp = out / ".generation_quality.json.tmp"
        tmp.write_text(json.dumps(doc, indent=2))
        os.replace(tmp, out / "generation_quality.json")

    print(f"\n{'method':<16}{'IS':>8}{'IC-LPIPS':>10}{'quality s':>11}")
    for m, e in doc["methods"].items():
        print(f"{m:<16}{e['is']:>8.3f}{e['ic_lpips']:>10.3f}{e['timings']['quality_s']:>11.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
