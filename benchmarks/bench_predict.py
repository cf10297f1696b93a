"""Predict throughput of a trained model: PyTorch (the model folder) vs onnxruntime (its export).

Times `model.run` on images already decoded and resized (the model's own cost: localiser,
PatchCore search, classifier) at batch 1 and 16, after one warm-up call, and the whole `predict`
path once (decode, resize, run, mask + overlay PNGs, CSV) at batch 16. Threads: torch and
onnxruntime both at --threads. Writes the figures as JSON to --out.

    .venv/bin/python benchmarks/bench_predict.py --model MODEL/ --data ../shared/datasets/mvtec_ad/bottle \\
        --n 32 --out /tmp/af_bench_predict.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _timed(fn, reps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True, help="model folder (anomalyforge train)")
    ap.add_argument("--onnx", type=Path, default=None, help="its export (written to a temp file when absent)")
    ap.add_argument("--data", type=Path, required=True, help="category folder whose test images are predicted")
    ap.add_argument("--n", type=int, default=32, help="images timed per setting")
    ap.add_argument("--batches", default="1,16")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)

    import torch

    from anomalyforge.data.io import read_image
    from anomalyforge.deploy import OnnxModel, predict_images
    from anomalyforge.deploy.predict import resize_for_classifier
    from anomalyforge.pipelines.predict import check_parity, export_model
    from anomalyforge.pipelines.train import load_model

    torch.set_num_threads(args.threads)
    tm = load_model(args.model)
    info = tm.info
    tmp = Path(tempfile.mkdtemp(prefix="af_bench_predict_"))
    onnx_file = args.onnx or tmp / "model.onnx"
    if args.onnx is None:
        t0 = time.perf_counter()
        export_model(args.model, onnx_file)
        export_s = time.perf_counter() - t0
    else:
        export_s = None
    om = OnnxModel(onnx_file, threads=args.threads)
    files = sorted((args.data / "test").rglob("*.png"))[: args.n]
    s, c = info.image_size, info.cls_size
    x = np.stack([read_image(f, s) for f in files])
    xc = np.stack([resize_for_classifier(im, c) for im in x]) if c else None
    parity = check_parity(args.model, onnx_file, x[:4])
    figures: dict = {}
    for b in [int(v) for v in args.batches.split(",")]:
        for name, runner in (("pytorch", tm), ("onnxruntime", om)):
            def go(runner=runner, b=b) -> None:
                for i in range(0, len(x), b):
                    runner.run(x[i:i + b], None if xc is None else xc[i:i + b])
            runner.run(x[:b], None if xc is None else xc[:b])  # warm-up
            sec = _timed(go, 1)
            ips, ms = len(x) / sec, 1e3 * sec / len(x)
            figures[f"{name}_batch{b}"] = {"images_per_s": round(ips, 2), "ms_per_image": round(ms, 1)}
            print(f"{name:12s} batch {b:3d}: {ips:7.2f} images/s ({ms:.1f} ms/image)", flush=True)
    e2e = {}
    for name, runner in (("pytorch", tm), ("onnxruntime", om)):
        out = tmp / f"pred_{name}"
        t0 = time.perf_counter()
        predict_images(runner, files, out, batch=16)
        sec = time.perf_counter() - t0
        e2e[name] = round(len(files) / sec, 2)
        print(f"{name:12s} predict end to end (512 px PNG in, PNGs + CSV out, batch 16): {e2e[name]:.2f} images/s")
    doc = {"model": str(args.model), "profile": info.profile, "image_size": s, "cls_size": c, "localizer": info.model,
           "bank": (info.fusion or {}).get("bank_size"), "n_images": len(files), "threads": args.threads,
           "export_s": None if export_s is None else round(export_s, 1), "parity_max_abs": parity,
           "model_run": figures, "end_to_end_images_per_s": e2e, "machine": platform.platform(),
           "python": sys.version.split()[0], "torch": torch.__version__}
    print(json.dumps(doc["parity_max_abs"]))
    if args.out:
        args.out.write_text(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
