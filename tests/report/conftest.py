"""A small but valid finished-benchmark folder, built from real MVTec AD bottle test images.

Two methods' prediction maps are random fields with (method-dependent) signal inside the real
ground-truth masks; every number in results.json is computed from those maps with
anomalyforge.metrics, exactly as the benchmark does, so the report shows real values.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from anomalyforge import metrics
from anomalyforge.atomic import write_png_atomic
from anomalyforge.data.io import read_image, read_mask
from anomalyforge.report.figures import good_scale

SIZE = 64
TYPES = ("broken_large", "broken_small", "contamination")
PER_TYPE = 3  # test images per defect type in the fake benchmark
N_GOOD = 3
N_SCALE = 4  # held-out good training images each method's heat scale is measured on


def _test_items(bottle: Path) -> list[tuple[str, str, Path | None]]:
    """(type, image path, mask path) for the fake test set; picked out of order on purpose."""
    items = []
    for t in TYPES:
        for i in (8, 5, 7)[:PER_TYPE]:  # later files first: the report must sort by path itself
            items.append((t, str(bottle / "test" / t / f"{i:03d}.png"),
                          bottle / "ground_truth" / t / f"{i:03d}_mask.png"))
    for i in (4, 1, 3)[:N_GOOD]:
        items.append(("good", str(bottle / "test" / "good" / f"{i:03d}.png"), None))
    return items


def _method(maps: np.ndarray, masks: np.ndarray, labels: np.ndarray, types: np.ndarray,
            kind: str, model: str, cls_pred: np.ndarray | None, rel_maps: str, run: str | None,
            n_pairs: int, total_s: float, rss: float) -> dict:
    scores = maps.reshape(len(maps), -1).max(axis=1).astype(np.float64)
    pixel = {"auroc": metrics.auroc(maps, masks), "ap": metrics.average_precision(maps, masks),
             "f1_max": metrics.f1_max(maps, masks)[0], "aupro": metrics.aupro(maps, masks)}
    image = {"auroc": metrics.auroc(scores, labels), "ap": metrics.average_precision(scores, labels),
             "f1_max": metrics.f1_max(scores, labels)[0]}
    per_type = {}
    for t in TYPES:
        sel = (types == t) | (labels == 0)
        per_type[t] = {"pixel_auroc": metrics.auroc(maps[types == t], masks[types == t]),
                       "pixel_ap": metrics.average_precision(maps[types == t], masks[types == t]),
                       "image_auroc": metrics.auroc(scores[sel], labels[sel])}
    classification = None
    if cls_pred is not None:
        true = types[labels == 1]
        labs = sorted(set(true.tolist()))
        conf = [[int(np.sum((true == a) & (cls_pred == b))) for b in labs] for a in labs]
        classification = {"accuracy": metrics.accuracy(cls_pred, true),
                          "per_type": metrics.per_class_accuracy(cls_pred, true),
                          "labels": labs, "confusion": conf, "trained_on": "generated pairs"}
    return {"status": "done", "kind": kind, "model": model,
            "localization": {"pixel": pixel, "image": image, "per_type": per_type},
            "classification": classification,
            "timings": {"generate_s": total_s * 0.3, "train_s": total_s * 0.6, "eval_s": total_s * 0.1,
                        "total_s": total_s},
            "peak_rss_mb": rss, "n_pairs": n_pairs, "run": run, "artifacts": {"maps": rel_maps}}, scores


def build_bench(root: Path, bottle: Path, seed: int = 0) -> Path:
    """Write results.json, two maps.npz files and one generated run under `root`; return it."""
    rng = np.random.default_rng(seed)
    items = _test_items(bottle)
    types = np.array([t for t, _, _ in items])
    paths = np.array([p for _, p, _ in items])
    labels = (types != "good").astype(np.int64)
    masks = np.stack([read_mask(m, SIZE) if m is not None else np.zeros((SIZE, SIZE), np.uint8)
                      for _, _, m in items])
    gt = (masks > 0).astype(np.float32)
    methods = {}
    for name, strength, kind, model, rss, secs in (("cutpaste_like", 0.9, "synthetic", "lite_unet", 900.0, 95.0),
                                                   ("patchcore", 0.3, "baseline", "patchcore", 1400.0, 40.0)):
        noise = rng.random(gt.shape, dtype=np.float32)
        maps = (noise + strength * gt * rng.random(gt.shape, dtype=np.float32)).astype(np.float16)
        # the maps of held-out good TRAINING images: the good level (noise only), as the benchmark measures it
        held_good = rng.random((N_SCALE, SIZE, SIZE), dtype=np.float32)
        cls_pred = None
        if kind == "synthetic":
            cls_pred = types[labels == 1].copy()
            cls_pred[1] = TYPES[1]  # one mistake (on broken_large/005, a shown tile): off-diagonal entry
        rel = f"methods/{name}/maps.npz"
        run = f"runs/{name}" if kind == "synthetic" else None
        entry, scores = _method(maps.astype(np.float32), gt > 0, labels, types, kind, model, cls_pred, rel,
                                run, 2 if run else 0, secs, rss)
        if kind == "synthetic":  # generation quality as the benchmark records it
            entry["generation"] = {"n": 2, "is": 1.2345, "is_std": 0.0, "ic_lpips": 0.0876, "references_is": 1.4321,
                                   "types": {TYPES[0]: {"n": 2, "is": 1.111, "is_std": 0.0, "ic_lpips": 0.0555}}}
        entry["display_scale"] = {**good_scale(held_good), "n_images": N_SCALE,
                                  "from": "held-out good training images (no model trained on them)"}
        methods[name] = entry
        arrays = {"maps": maps, "masks": masks, "labels": labels, "types": types, "paths": paths,
                  "image_scores": scores}
        if cls_pred is not None:
            arrays |= {"cls_pred": cls_pred, "cls_true": types[labels == 1]}
        (root / "methods" / name).mkdir(parents=True, exist_ok=True)
        np.savez_compressed(root / rel, **arrays)
    _generated_run(root / "runs" / "cutpaste_like", bottle)
    results = {"category": "bottle", "data": str(bottle), "profile": "tiny", "seed": seed,
               "config": {"data": str(bottle), "size": SIZE, "methods": list(methods)},
               "split": {"train_defects": {"broken_large": 7, "broken_small": 8, "contamination": 7},
                         "test_defects": {t: PER_TYPE for t in TYPES},
                         "train_good": 209, "test_good": N_GOOD},
               "created": "2026-11-25T08:00:00+00:00", "version": "0.1.0", "methods": methods}
    (root / "results.json").write_text(json.dumps(results, indent=2))
    return root


def _generated_run(run_dir: Path, bottle: Path) -> None:
    """Two generated pairs: a real good image with a dark blob, and the blob's mask."""
    records = []
    for k, (t, centre) in enumerate((("broken_large", (20, 24)), ("contamination", (40, 36)))):
        img = read_image(bottle / "train" / "good" / f"{k:03d}.png", SIZE)
        yy, xx = np.mgrid[:SIZE, :SIZE]
        blob = (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 < 49
        img[blob] = (30, 20, 10)
        write_png_atomic(run_dir / "images" / f"{k:03d}.png", img)
        write_png_atomic(run_dir / "masks" / f"{k:03d}.png", blob.astype(np.uint8) * 255)
        records.append({"id": f"{t}_{k:06d}", "image": f"images/{k:03d}.png", "mask": f"masks/{k:03d}.png",
                        "defect_type": t, "seed": k})
    (run_dir / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


@pytest.fixture(scope="module")
def report_bench(tmp_path_factory: pytest.TempPathFactory, bottle_dir: Path) -> Path:
    return build_bench(tmp_path_factory.mktemp("bench"), bottle_dir)
