"""The model on the line, end to end (issue 17): benchmark -> delivered model -> predict the test split.

Per category: `benchmark --methods croppaste --save-models` (the `cpu` profile; thresholds chosen on
training data only, `pipelines.thresholds`), then `predict` of the held-out test split with the saved
model folder (PyTorch) and with its ONNX export (onnxruntime), and the figures at the recorded
thresholds from the prediction files: image accuracy, false-alarm rate on test/good, miss rate, pixel
F1 of the mask PNGs (at each image's own size) and defect-type accuracy -- next to what the benchmark
reports (`decisions`, at the model size). Then predict throughput (`model.run` on decoded, resized
images) at the model size, batch 1 and 16, PyTorch vs onnxruntime, each in its own process for its
peak memory, and the sizes of the model folder and the .onnx file. Re-running resumes (the benchmark
skips a finished method; predictions resume); export and speed are redone.

    python benchmarks/deploy_line.py --data ../shared/datasets/mvtec_ad/bottle --out /tmp/af_line/bottle
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve()


def _size_mb(path: Path) -> float:
    if path.is_file():
        return round(path.stat().st_size / 1e6, 2)
    files = [f for f in path.rglob("*") if f.is_file() and "run" not in f.relative_to(path).parts]
    return round(sum(f.stat().st_size for f in files) / 1e6, 2)


def _peak_mb() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss it does not carry over from the
    parent that started this process)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024.0, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)


def _rows(folder: Path) -> dict[str, dict]:
    with open(folder / "predictions.csv", newline="") as fh:
        return {r["path"]: r for r in csv.DictReader(fh)}


def line_figures(rows: dict[str, dict], out: Path, truth: list[tuple[str, str, str | None]],
                 mask_threshold: int) -> dict:
    """Figures at the recorded thresholds from a `predict` folder: verdicts and types from the CSV,
    pixel F1 from the mask PNGs against the true masks at each image's own size."""
    from anomalyforge.data.io import read_mask

    tp = fp = fn = 0
    flags, labels, t_ok, t_n = [], [], 0, 0
    for path, dtype, mask in truth:
        r = rows[path]
        pred = np.asarray(read_mask(out / r["mask"])) > 0
        gt = (np.asarray(read_mask(mask, threshold=mask_threshold)) > 0 if mask else np.zeros_like(pred))
        tp += int(np.sum(pred & gt))
        fp += int(np.sum(pred & ~gt))
        fn += int(np.sum(~pred & gt))
        flags.append(r["verdict"] == "defect")
        labels.append(dtype != "good")
        if dtype != "good" and r["defect_type"]:
            t_n += 1
            t_ok += int(r["defect_type"] == dtype)
    f, lab = np.array(flags), np.array(labels)
    return {"image_accuracy": float(np.mean(f == lab)), "false_alarm_rate": float(np.mean(f[~lab])),
            "miss_rate": float(np.mean(~f[lab])), "pixel_f1": 2 * tp / (2 * tp + fp + fn),
            "type_accuracy": t_ok / t_n if t_n else None, "n_good": int((~lab).sum()), "n_defect": int(lab.sum())}


def speed(model: str, data: Path, runtime: str, n: int, batches: list[int], threads: int) -> dict:
    """Images/s of `model.run` at batch sizes `batches` in this process (the caller's own process)."""
    from anomalyforge.data.io import read_image
    from anomalyforge.deploy.predict import resize_for_classifier

    if runtime == "onnxruntime":
        from anomalyforge.deploy import OnnxModel

        runner = OnnxModel(model, threads=threads)
    else:
        import torch

        from anomalyforge.pipelines.train import load_model

        torch.set_num_threads(threads)
        runner = load_model(model)  # type: ignore[assignment]
    info = runner.info
    files = sorted((data / "test").rglob("*.png")) or sorted(data.rglob("*.jpg"))
    files = files[:n]
    x = np.stack([read_image(f, info.image_size) for f in files])
    xc = np.stack([resize_for_classifier(im, info.cls_size) for im in x]) if info.cls_size else None
    out = {}
    for b in batches:
        runner.run(x[:b], None if xc is None else xc[:b])  # warm-up
        t0 = time.perf_counter()
        for i in range(0, len(x), b):
            runner.run(x[i:i + b], None if xc is None else xc[i:i + b])
        sec = time.perf_counter() - t0
        out[f"batch{b}"] = {"images_per_s": round(len(x) / sec, 2), "ms_per_image": round(1e3 * sec / len(x), 1)}
    out["peak_rss_mb"] = _peak_mb()
    out["n_images"] = len(x)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="category folder")
    ap.add_argument("--out", type=Path, required=True, help="work folder (benchmark, predictions, figures.json)")
    ap.add_argument("--method", default="croppaste")
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="profile override")
    ap.add_argument("--n", type=int, default=None, help="generated pairs per defect type (default: profile's)")
    ap.add_argument("--speed-images", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--speed-only", default=None, help=argparse.SUPPRESS)  # runtime=MODEL, in a child process
    args = ap.parse_args(argv)
    if args.speed_only:
        runtime, model = args.speed_only.split("=", 1)
        print(json.dumps(speed(model, args.data, runtime, args.speed_images, [1, 16], args.threads)))
        return 0

    from anomalyforge.data import few_shot_split, load_dataset
    from anomalyforge.inspect.profiles import get_profile
    from anomalyforge.pipelines.benchmark import run_benchmark
    from anomalyforge.pipelines.predict import check_parity, export_model, predict

    over = {}
    for kv in args.set:
        k, v = kv.split("=", 1)
        over[k] = json.loads(v)
    prof = get_profile(args.profile, **over)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    res = run_benchmark(args.data, out / "bench", [args.method], profile=prof, n=args.n, save_models=True,
                        progress=sys.stderr.isatty())
    bench_s = time.perf_counter() - t0
    entry = res["methods"][args.method]
    model = out / "bench" / entry["artifacts"]["model"]
    ds = load_dataset(args.data)
    split = few_shot_split(ds, progress=False)
    truth = [(str(s.image), t, str(s.mask) if s.mask else None) for t in sorted(split.test_defects)
             for s in split.test_defects[t]] + [(str(s.image), "good", None) for s in split.test_good]
    paths = [p for p, _, _ in truth]
    onnx_file = out / f"{ds.category}.onnx"
    t1 = time.perf_counter()
    export_model(model, onnx_file)
    export_s = time.perf_counter() - t1
    figures: dict = {}
    timings = {}
    for name, m in (("pytorch", model), ("onnxruntime", onnx_file)):
        t1 = time.perf_counter()
        predict(m, paths, out / f"pred_{name}", batch=16)
        timings[name] = round(time.perf_counter() - t1, 1)
        figures[name] = line_figures(_rows(out / f"pred_{name}"), out / f"pred_{name}", truth, ds.mask_threshold)
    a, b = _rows(out / "pred_pytorch"), _rows(out / "pred_onnxruntime")
    verdicts_agree = sum(a[p]["verdict"] == b[p]["verdict"] for p in paths)
    masks_equal = sum((out / "pred_pytorch" / a[p]["mask"]).read_bytes() == (out / "pred_onnxruntime" / b[p]["mask"])
                      .read_bytes() for p in paths)
    # the benchmark's own verdicts at the same thresholds (its maps.npz image scores)
    maps = np.load(out / "bench" / entry["artifacts"]["maps"])
    thr = entry["decisions"]["image_threshold"]
    bench_verdict = {str(p): bool(s > thr) for p, s in zip(maps["paths"], maps["image_scores"], strict=True)}
    same_as_bench = sum(bench_verdict[str(Path(p))] == (a[p]["verdict"] == "defect") for p in paths)
    from anomalyforge.data.io import read_image

    parity = check_parity(model, onnx_file, np.stack([read_image(p, prof.size) for p in paths[:8]]))
    spd = {}
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    for name, m in (("pytorch", model), ("onnxruntime", onnx_file)):
        cmd = [sys.executable, str(HERE), "--data", str(args.data), "--out", str(out), "--threads", str(args.threads),
               "--speed-images", str(args.speed_images), "--speed-only", f"{name}={m}"]
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
        spd[name] = json.loads(done.stdout.strip().splitlines()[-1])
    doc = {"category": ds.category, "method": args.method, "profile": prof.name, "image_size": prof.size,
           "benchmark_s": round(bench_s, 1), "export_s": round(export_s, 1), "predict_s": timings,
           "thresholds": {k: entry["decisions"][k] for k in ("image_threshold", "pixel_threshold", "pixel_from",
                                                             "rule")},
           "benchmark": {k: entry["decisions"].get(k) for k in ("image_accuracy", "false_alarm_rate", "miss_rate",
                                                                "pixel_f1", "type_accuracy")},
           "line": figures, "agreement": {"images": len(paths), "pytorch_verdicts_as_benchmark": same_as_bench,
                                          "onnx_verdicts_as_pytorch": verdicts_agree,
                                          "onnx_masks_byte_equal_pytorch": masks_equal},
           "parity_max_abs": parity, "speed": spd,
           "size_mb": {"model_folder": _size_mb(model), "onnx": _size_mb(onnx_file)}}
    (out / "figures.json").write_text(json.dumps(doc, indent=2))
    print(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
