"""Time model-free generation end to end: N pairs of one defect type at 256x256 per method.

Each method runs in a fresh subprocess (so peak RSS is its own): load the dataset, fit on the
few-shot training split (segmenting every good image), generate and write PNGs + manifest.
Reports wall seconds, CPU seconds, pairs/s and peak RSS (resource.getrusage, MiB); prints a table
and writes JSON. Target: croppaste <= 30 s and <= 2 GB for 1000 bottle pairs.

    .venv/bin/python benchmarks/bench_generate.py --data ../shared/datasets/mvtec_ad/bottle \
        --type broken_large --n 1000 --out /tmp/af_bench
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

METHODS = ["croppaste", "cutpaste", "cutpaste-scar", "perlin", "nsa"]


def _one(args: argparse.Namespace) -> None:
    """Child process: one method, prints one JSON line."""
    from anomalyforge.synth.run import generate_run

    out = Path(args.out) / args.method
    if out.exists():
        shutil.rmtree(out)
    t0, c0 = time.perf_counter(), time.process_time()
    s = generate_run(Path(args.data), out, method=args.method, n=args.n, category=args.category,
                     types=[args.type], seed=0, size=args.size, progress=False)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux -> MiB
    print(json.dumps({"method": args.method, "pairs": s["new"], "seconds": round(wall, 2),
                      "cpu_seconds": round(cpu, 2), "pairs_per_s": round(s["new"] / wall, 1),
                      "peak_rss_mib": round(rss, 1), "redraws": s["redraws"]}))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--category", default=None)
    ap.add_argument("--type", required=True, help="defect type to generate")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--out", default="/tmp/af_bench", help="scratch folder for the runs")
    ap.add_argument("--json", default=None, help="result file (default OUT/bench_generate.json)")
    ap.add_argument("--method", help=argparse.SUPPRESS)  # child mode
    args = ap.parse_args()
    if args.method:
        _one(args)
        return 0
    rows = []
    for m in args.methods.split(","):
        cmd = [sys.executable, __file__, "--data", args.data, "--type", args.type, "--n", str(args.n),
               "--size", str(args.size), "--out", args.out, "--method", m]
        if args.category:
            cmd += ["--category", args.category]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            print(f"{m}: failed\n{res.stderr[-2000:]}", file=sys.stderr)
            return 1
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
    load = os.getloadavg()[0]
    print(f"{'method':<15} {'pairs':>6} {'wall s':>8} {'cpu s':>8} {'pairs/s':>8} {'peak MiB':>9} {'redraws':>8}")
    for r in rows:
        print(f"{r['method']:<15} {r['pairs']:>6} {r['seconds']:>8.1f} {r['cpu_seconds']:>8.1f} "
              f"{r['pairs_per_s']:>8.1f} {r['peak_rss_mib']:>9.0f} {r['redraws']:>8}")
    print(f"(cpu count {os.cpu_count()}, 1-min load average at the end {load:.1f})")
    out = Path(args.json) if args.json else Path(args.out) / "bench_generate.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"data": args.data, "type": args.type, "n": args.n, "size": args.size,
                               "cpu_count": os.cpu_count(), "load_average": load, "results": rows}, indent=2))
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
