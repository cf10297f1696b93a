"""The supervised benchmark's croppaste row with ImageNet vs a TAB backbone (issue 16).

    PYTHONPATH=src .venv/bin/python benchmarks/tab_supervised.py --out /tmp/tab_sup \
        --backbone /tmp/tab_bench/bb-all-s0 --data ../shared/datasets/mvtec_ad/bottle [...] \
        [--seeds 0] [--profile cpu] [--set quality=false] [--run bottle=RUN]

Per category and seed, `run_benchmark` of croppaste (the fused feature head) and PatchCore twice:
once with the profile's ImageNet EfficientNet-Lite0, once with `--set backbone=BACKBONE/` (every
backbone: the localiser, its PatchCore part, the classifier and the baseline). The TAB arm trains
on the very pairs the ImageNet arm generated (or `--run CATEGORY=RUN`), so the difference is the
backbone's alone. Writes OUT/tab_supervised.json (both arms' figures and the paired differences)
and prints a markdown table. Resumes: a finished arm (its results.json) is read, not rerun.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from anomalyforge.atomic import write_json_atomic
from anomalyforge.data import load_dataset
from anomalyforge.formats.results import RESULTS_JSON
from anomalyforge.inspect.profiles import get_profile
from anomalyforge.pipelines.benchmark import run_benchmark

METHODS = ("croppaste", "patchcore")
KEYS = (("image", "auroc"), ("pixel", "auroc"), ("pixel", "ap"), ("pixel", "aupro"))


def figures(method: dict) -> dict[str, float | None]:
    """Image / pixel AUROC, pixel AP, AUPRO and defect-type accuracy of one results.json method."""
    loc = method["localization"]
    row: dict[str, float | None] = {f"{a}_{b}": loc[a].get(b) for a, b in KEYS}
    cls = method.get("classification") or {}
    row["type_accuracy"] = cls.get("accuracy")
    return row


def arm(data: Path, out: Path, overrides: dict, seed: int, profile: str, run: Path | None) -> dict:
    """Run (or read back) one arm's benchmark; {method: figures}."""
    if (out / RESULTS_JSON).is_file():
        res = json.loads((out / RESULTS_JSON).read_text())
    else:
        runs = {"croppaste": run} if run is not None else None
        res = run_benchmark(data, out, list(METHODS), profile=get_profile(profile, **overrides), seed=seed,
                            runs=runs, progress=sys.stderr.isatty())
    return {m: figures(res["methods"][m]) for m in METHODS} | {"backbone": res["backbone"]}


def _value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, nargs="+", required=True)
    p.add_argument("--backbone", type=Path, required=True, help="a finished BACKBONE/ folder (pretrain-backbone)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seeds", default="0")
    p.add_argument("--profile", default="cpu")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--run", action="append", default=[], metavar="CATEGORY=RUN",
                   help="a croppaste run of that category both arms train on (default: the ImageNet arm's own)")
    a = p.parse_args(argv)
    # JSON values as on the command line (quality=false, fusion=0.6); anything else is a string
    overrides = {k: _value(v) for k, v in (s.split("=", 1) for s in a.set)}
    runs = {k: Path(v) for k, v in (s.split("=", 1) for s in a.run)}
    path = a.out / "tab_supervised.json"
    doc: dict = {"command": " ".join(sys.argv), "profile": a.profile, "overrides": overrides,
                 "backbone": str(a.backbone.resolve()), "rows": {}}
    for d in a.data:
        cat = load_dataset(d).category
        for seed in (int(s) for s in a.seeds.split(",")):
            base = a.out / f"{cat}-s{seed}"
            imagenet = arm(d, base / "imagenet", overrides, seed, a.profile, runs.get(cat))
            run = runs.get(cat) or base / "imagenet" / "runs" / "croppaste"
            tab = arm(d, base / "tab", {**overrides, "backbone": str(a.backbone)}, seed, a.profile, run)
            doc["rows"].setdefault(cat, {})[str(seed)] = {"imagenet": imagenet, "tab": tab}
            write_json_atomic(path, doc)
    lines = ["| category | method | backbone | image AUROC | pixel AUROC | pixel AP | AUPRO | type accuracy |",
             "|---|---|---|---|---|---|---|---|"]
    for cat, per_seed in doc["rows"].items():
        for m in METHODS:
            for label in ("imagenet", "tab"):
                cells = []
                for k in [f"{x}_{y}" for x, y in KEYS] + ["type_accuracy"]:
                    vals = [s[label][m][k] for s in per_seed.values() if s[label][m][k] is not None]
                    cell = f"{100 * np.mean(vals):.1f}" if vals else "-"
                    if label == "tab" and vals:
                        diff = [s["tab"][m][k] - s["imagenet"][m][k] for s in per_seed.values()
                                if s["tab"][m][k] is not None and s["imagenet"][m][k] is not None]
                        cell += f" ({100 * np.mean(diff):+.1f})"
                    cells.append(cell)
                lines.append(f"| {cat} | {m} | {label} | " + " | ".join(cells) + " |")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
