"""TAB backbone vs ImageNet EfficientNet-Lite0 in PatchCore and PaDiM (issue 16).

    PYTHONPATH=src .venv/bin/python benchmarks/tab_backbone.py --out /tmp/tab_bench \
        --data ../shared/datasets/mvtec_ad/bottle ../shared/datasets/magnetic_tile \
               ../shared/datasets/mvtec_loco/juice_bottle \
        [--seeds 0,1,2] [--pretrain-profile cpu] [--pretrain-set epochs=3] [--size 256] [--set pc_max_bank=2000]
        [--methods-table]

Per seed: pretrain a TAB backbone on the good training images of all categories (`all`) and, per
category, on the other categories only (`loo`, the cross-category protocol: the evaluated
category is never seen); then fit PatchCore (the profile's settings) and PaDiM (anomalib's
`PadimModel`, its feature extractor swapped for ours: levels 1-3, 100 random dims) on each
category's good training images with each backbone and score the held-out test split once
(image AUROC, pixel AUROC, pixel AP, AUPRO). `--methods-table` adds PatchCore with `all`
backbones pretrained on one synthetic method each (perlin, cutpaste, nsa) vs all three.
Writes OUT/tab_backbone.json (every figure, the paired TAB - ImageNet differences over seeds,
pretraining time per epoch and peak memory) and prints markdown tables.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from anomalyforge.atomic import write_json_atomic
from anomalyforge.data import few_shot_split, fit_data, load_dataset
from anomalyforge.features.backbone import BackboneSpec, frozen_extractor, to_tensor
from anomalyforge.formats.backbone import resolve_backbone
from anomalyforge.inspect.evaluate import TestSet, localization_metrics
from anomalyforge.inspect.patchcore import PatchCore
from anomalyforge.inspect.profiles import get_profile
from anomalyforge.inspect.train import good_images
from anomalyforge.pipelines.pretrain import TAB_METHODS, pretrain_backbone

KEYS = (("image", "auroc"), ("pixel", "auroc"), ("pixel", "ap"), ("pixel", "aupro"))


class _LiteLayers(torch.nn.Module):
    """Our frozen extractor in anomalib's feature-extractor shape: {layer name: map}."""

    def __init__(self, weights: str, levels: tuple[int, ...]) -> None:
        super().__init__()
        self.fx = frozen_extractor(BackboneSpec(levels=levels, weights=weights))
        self.names = [f"level{lv}" for lv in levels]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return dict(zip(self.names, self.fx(x), strict=True))


def padim_maps(weights: str, train: np.ndarray, test: np.ndarray, seed: int, n_features: int = 100,
               batch: int = 16) -> np.ndarray:
    """anomalib's PaDiM (Gaussian per patch, Mahalanobis map) on our backbone's levels 1-3."""
    from anomalib.models.image.padim.torch_model import PadimModel  # lazy: anomalib is heavy

    model = PadimModel(backbone="resnet18", layers=["layer1", "layer2", "layer3"], pre_trained=False,
                       n_features=100)
    layers = _LiteLayers(weights, (1, 2, 3))
    model.feature_extractor = layers
    model.layers = layers.names
    n_orig = sum(layers.fx.channels)
    gen = torch.Generator().manual_seed(seed)
    model.idx = torch.randperm(n_orig, generator=gen)[:n_features]
    model.train()  # PaDiM collects embeddings in training mode ...
    layers.eval()  # ... but our backbone's BatchNorm must keep its statistics
    for i in range(0, len(train), batch):
        model(to_tensor(train[i:i + batch]))
    model.fit()
    model.eval()
    maps = []
    with torch.no_grad():
        for i in range(0, len(test), batch):
            maps.append(model(to_tensor(test[i:i + batch])).anomaly_map[:, 0].numpy())
    return np.concatenate(maps).astype(np.float32)


def _figures(loc: dict) -> dict[str, float | None]:
    return {f"{a}_{b}": loc[a].get(b) for a, b in KEYS}


def evaluate(data: Path, weights: dict[str, str], size: int, seed: int, prof, padim: bool,
             progress: bool) -> dict[str, dict]:
    """{backbone label: {detector: figures}} on one category; the test split is read once."""
    ds = load_dataset(data)
    split = few_shot_split(ds, progress=progress)
    split.check_disjoint()
    fit = fit_data(split, size=size)
    train = good_images(fit, size, progress)
    test = TestSet.load(split, size, progress)
    out: dict[str, dict] = {}
    for label, w in weights.items():
        row: dict[str, Any] = {}
        t0 = time.perf_counter()
        pc = PatchCore(prof.pc_levels, prof.pc_coreset, prof.pc_projection, prof.pc_sigma, seed, "cpu",
                       weights=w, max_bank=prof.pc_max_bank, candidates=prof.pc_candidates)
        pc.fit(train, progress=False)
        maps = pc.predict(test.images)
        row["patchcore"] = _figures(localization_metrics(test, maps, maps.reshape(len(maps), -1).max(1), False))
        row["patchcore"]["time_s"] = round(time.perf_counter() - t0, 1)
        if padim:
            t0 = time.perf_counter()
            maps = padim_maps(w, train, test.images, seed)
            row["padim"] = _figures(localization_metrics(test, maps, maps.reshape(len(maps), -1).max(1), False))
            row["padim"]["time_s"] = round(time.perf_counter() - t0, 1)
        out[label] = row
        print(f"  {ds.category} {label}: " + json.dumps(row), file=sys.stderr, flush=True)
    return out


def _pretrain(data: list[Path], out: Path, profile: str, overrides: dict, seed: int, methods=TAB_METHODS,
              progress: bool = False) -> tuple[str, dict]:
    info = pretrain_backbone(data, out, profile=profile, methods=methods, seed=seed, progress=progress,
                             **overrides)
    path, _ = resolve_backbone(out)
    hist = info.history
    return path, {"epochs": info.epochs_done, "time_per_epoch_s": round(float(np.mean([h["time_s"] for h in hist])), 1),
                  "peak_rss_mb": max(h["peak_rss_mb"] for h in hist), "final_loss": hist[-1]["loss"],
                  "images_per_epoch": hist[-1]["images"], "sha256": info.weights.sha256[:16]}


def _diffs(rows: dict, ref: str, labels: list[str]) -> dict:
    """Paired differences label - ref per category, detector and metric, over seeds: mean, sd, n."""
    out: dict = {}
    for cat, per_seed in rows.items():
        for label in labels:
            for det in ("patchcore", "padim"):
                for k in (f"{a}_{b}" for a, b in KEYS):
                    d = [s[label][det][k] - s[ref][det][k] for s in per_seed.values()
                         if det in s.get(label, {}) and s[label][det][k] is not None and s[ref][det][k] is not None]
                    if d:
                        out.setdefault(cat, {}).setdefault(label, {}).setdefault(det, {})[k] = {
                            "mean": float(np.mean(d)), "sd": float(np.std(d, ddof=1)) if len(d) > 1 else None,
                            "n": len(d)}
    return out


def _table(doc: dict) -> str:
    lines = ["| category | detector | backbone | image AUROC | pixel AUROC | pixel AP | AUPRO |",
             "|---|---|---|---|---|---|---|"]
    for cat, per_seed in doc["rows"].items():
        first = next(iter(per_seed.values()))
        for det in ("patchcore", "padim"):
            for label in first:
                if det not in first[label]:
                    continue
                cells = []
                for k in (f"{a}_{b}" for a, b in KEYS):
                    vals = [s[label][det][k] for s in per_seed.values() if s[label][det][k] is not None]
                    cell = f"{100 * np.mean(vals):.1f}" if vals else "-"
                    d = doc["diffs"].get(cat, {}).get(label, {}).get(det, {}).get(k)
                    if d is not None:
                        cell += f" ({100 * d['mean']:+.1f}" + (f" ± {100 * d['sd']:.1f}" if d["sd"] else "") + ")"
                    cells.append(cell)
                lines.append(f"| {cat} | {det} | {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _methods_table(doc: dict, names: list[str]) -> str:
    """PatchCore with `all` backbones learned from one synthetic method each: image AUROC / pixel AP /
    AUPRO, mean over the seeds run, with the ImageNet row (same seeds) first."""
    methods = list(dict.fromkeys(k.rsplit("-s", 1)[0] for k in doc["methods_rows"]))
    seeds = sorted({k.rsplit("-s", 1)[1] for k in doc["methods_rows"]})
    keys = ("image_auroc", "pixel_ap", "pixel_aupro")

    def cell(rows: list[dict]) -> str:
        return " / ".join(f"{100 * np.mean([r[k] for r in rows]):.1f}" for k in keys)

    lines = [f"| learned from ({len(seeds)} seeds) | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    lines.append("| (ImageNet, no TAB) | " + " | ".join(
        cell([doc["rows"][c][s]["imagenet"]["patchcore"] for s in seeds if s in doc["rows"].get(c, {})])
        for c in names) + " |")
    for m in methods:
        runs = [doc["methods_rows"][f"{m}-s{s}"] for s in seeds if f"{m}-s{s}" in doc["methods_rows"]]
        lines.append(f"| {m} | " + " | ".join(cell([r[c]["patchcore"] for r in runs]) for c in names) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, nargs="+", required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seeds", default="0")
    p.add_argument("--pretrain-profile", default="cpu")
    p.add_argument("--pretrain-set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--size", type=int, default=256, help="detector image size")
    p.add_argument("--profile", default="cpu", help="PatchCore settings of this benchmark profile")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a PatchCore profile setting, e.g. pc_max_bank=2000")
    p.add_argument("--no-padim", action="store_true")
    p.add_argument("--no-loo", action="store_true", help="skip the leave-one-category-out backbones")
    p.add_argument("--methods-table", action="store_true")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    overrides = {k: json.loads(v) for k, v in (s.split("=", 1) for s in args.pretrain_set)}
    prof = get_profile(args.profile, **{k: json.loads(v) for k, v in (s.split("=", 1) for s in args.set)})
    seeds = [int(s) for s in args.seeds.split(",")]
    path = args.out / "tab_backbone.json"
    doc: dict = json.loads(path.read_text()) if path.is_file() else {}
    doc.update({"command": " ".join(sys.argv), "pretrain_profile": args.pretrain_profile,
                "pretrain_overrides": overrides, "size": args.size, "profile": args.profile,
                "patchcore": {k: v for k, v in prof.to_dict().items() if k.startswith("pc_")}})
    doc.setdefault("rows", {})
    doc.setdefault("pretraining", {})
    doc.setdefault("methods_rows", {})
    names = [load_dataset(d).category for d in args.data]
    for seed in seeds:
        w_all, doc["pretraining"][f"all-s{seed}"] = _pretrain(args.data, args.out / f"bb-all-s{seed}",
                                                             args.pretrain_profile, overrides, seed)
        write_json_atomic(path, doc)
        for d, cat in zip(args.data, names, strict=True):
            if str(seed) in doc["rows"].get(cat, {}):
                continue
            weights = {"imagenet": "imagenet", "tab-all": w_all}
            if not args.no_loo and len(args.data) > 1:
                others = [x for x in args.data if x != d]
                weights["tab-loo"], doc["pretraining"][f"loo-{cat}-s{seed}"] = _pretrain(
                    others, args.out / f"bb-loo-{cat}-s{seed}", args.pretrain_profile, overrides, seed)
            doc["rows"].setdefault(cat, {})[str(seed)] = evaluate(d, weights, args.size, seed, prof,
                                                                  not args.no_padim, False)
            doc["diffs"] = _diffs(doc["rows"], "imagenet", ["tab-all", "tab-loo"])
            write_json_atomic(path, doc)
        if args.methods_table:
            for m in [*TAB_METHODS, "all"]:
                key = f"{m}-s{seed}"
                if key in doc["methods_rows"]:
                    continue
                methods = TAB_METHODS if m == "all" else (m,)
                w, doc["pretraining"][f"method-{key}"] = _pretrain(args.data, args.out / f"bb-{key}",
                                                                   args.pretrain_profile, overrides, seed, methods)
                doc["methods_rows"][key] = {cat: evaluate(d, {m: w}, args.size, seed, prof, False, False)[m]
                                            for d, cat in zip(args.data, names, strict=True)}
                write_json_atomic(path, doc)
    print(_table(doc))
    print(json.dumps(doc["pretraining"], indent=1))
    if doc["methods_rows"]:
        print(_methods_table(doc, names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
