"""Few-shot detector study (issue 15): detectors x shots x {without, with generated goods} x seeds.

    .venv/bin/python benchmarks/fewshot_detectors.py --datasets ../shared/datasets --out /tmp/fsdet \
        [--detectors patchcore,padim,cflow] [--shots 1,5] [--seeds 0,1,2] [--generated 32] [--size 128] \
        [--epochs 1] [--coreset 0.1] [--threads 1] [--goods augment,strategy1,strategy2,autoaugment,randaugment,vae]

Runs `anomalyforge.pipelines.fewshot.run_fewshot_benchmark` on MVTec AD bottle, Magnetic Tile
and MVTec LOCO juice_bottle (the `cpu` profile at `--size` px; anomalib's detectors on the
offline EfficientNet-Lite0, `--epochs` for CFlow / FastFlow / STFPM; generated goods: the
default seeded augmentation, `synth.good.augment_goods`, or each of TVG's torchvision arms given
to `--goods`, one folder per arm, or `vae`: TVG's variance-aware generator, which offline fits a
small VAE on each draw's K images, `synth.good.VaeGoodConfig`), prints each category's table, then
the mean over categories per (detector, shots): image / pixel AUROC, pixel AP, AUPRO, the paired
image-AUROC gain from generated goods, and the seconds per model (fit on the K (+ generated)
goods and scoring the whole test split). Each category's folder resumes; `--summarise` prints the
tables of what an interrupted study finished (the `seeds` column says how many draws each mean has).
With more than one `--goods` arm a last table puts the arms side by side (mean over categories).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from anomalyforge.inspect.anomalib_detectors import DetectorConfig
from anomalyforge.inspect.profiles import get_profile
from anomalyforge.pipelines.fewshot import format_fewshot_table, run_fewshot_benchmark
from anomalyforge.synth.good import TORCHVISION_ARMS, GoodsConfig, TorchvisionGoodConfig, VaeGoodConfig

CATEGORIES = (("bottle", "mvtec_ad/bottle"), ("magnetic_tile", "magnetic_tile"),
              ("juice_bottle", "mvtec_loco/juice_bottle"))
KEYS = ("image_auroc", "pixel_auroc", "pixel_ap", "pixel_aupro")
ARMS = ("augment", *TORCHVISION_ARMS, "vae")  # vae: TVG's variance-aware generator (offline: a small VAE per draw)


def overall(docs: dict[str, dict]) -> str:
    """Mean over categories per (detector, shots, generated), in %, plus the paired gain."""
    groups: dict[tuple[str, int | str, int], list[dict]] = {}
    for doc in docs.values():
        for e in doc["summary"]:
            k = "full" if e["shots"] == doc["config"]["n_good"] else e["shots"]
            groups.setdefault((e["detector"], k, e["generated"]), []).append(e)

    def mean(es: list[dict], key: str) -> str:
        vals = [e[key] for e in es if e.get(key) is not None]
        return f"{100 * np.mean(vals):7.1f}" if len(vals) == len(es) else f"{'-':>7}"

    lines = [f"mean over {', '.join(docs)}",
             f"{'detector':>11}{'shots':>6}{'generated':>10}{'categories':>11}" + "".join(f"{k:>13}" for k in KEYS)
             + f"{'gain img':>10}{'s/model':>9}"]
    for (d, k, g), es in sorted(groups.items(), key=lambda t: (t[0][0], str(t[0][1]), t[0][2])):
        lines.append(f"{d:>11}{k!s:>6}{g:>10}{len(es):>11}" + "".join(f"{mean(es, key):>13}" for key in KEYS)
                     + (f"{mean(es, 'gain_image_auroc'):>10}" if g else f"{'':>10}")
                     + f"{np.mean([e['time_s'] for e in es]):9.1f}")
    return "\n".join(lines)


def gain_cell(e: dict | None) -> str:
    """`+g.g (sd)` of a summary entry's paired image-AUROC gain, in %; `-` when it has none."""
    if e is None or e.get("gain_image_auroc") is None:
        return f"{'-':>14}"
    return f"{100 * e['gain_image_auroc']:+8.1f} ({100 * e['gain_image_auroc_std']:3.1f})"


def arms_table(by_arm: dict[str, dict[str, dict]]) -> str:
    """One row per (detector, shots, arm): mean over categories of image AUROC with generated goods
    and its paired gain, and the per-category gains (each a mean over seeds)."""
    rows: dict[tuple[str, str, str], dict[str, dict]] = {}
    for arm, docs in by_arm.items():
        for cat, doc in docs.items():
            for e in doc["summary"]:
                if e["generated"]:
                    k = "full" if e["shots"] == doc["config"]["n_good"] else str(e["shots"])
                    rows.setdefault((e["detector"], k, arm), {})[cat] = e
    cats = sorted({c for docs in by_arm.values() for c in docs})
    lines = ["generator arms (image AUROC with generated goods; gain = paired, mean over seeds)",
             f"{'detector':>11}{'shots':>6}{'arm':>12}{'image AUROC':>12}{'mean gain':>10}"
             + "".join(f"{c[:13]:>14}" for c in cats)]
    for (d, k, arm), per in sorted(rows.items(), key=lambda t: (t[0][0], t[0][1], ARMS.index(t[0][2]))):
        es = [per[c] for c in cats if c in per]
        gains = [e["gain_image_auroc"] for e in es if e.get("gain_image_auroc") is not None]
        lines.append(f"{d:>11}{k:>6}{arm:>12}{100 * np.mean([e['image_auroc'] for e in es]):12.1f}"
                     + (f"{100 * np.mean(gains):+10.1f}" if len(gains) == len(es) else f"{'-':>10}")
                     + "".join(gain_cell(per.get(c)) for c in cats))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", type=Path, required=True, help="folder holding mvtec_ad, magnetic_tile, mvtec_loco")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--categories", default=",".join(c for c, _ in CATEGORIES))
    p.add_argument("--detectors", default="patchcore,padim,cflow")
    p.add_argument("--shots", default="1,5")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--generated", type=int, default=32)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--steps", type=int, default=None,
                   help="training batches of cflow / fastflow / stfpm instead of --epochs (equal for every K)")
    p.add_argument("--coreset", type=float, default=0.1,
                   help="anomalib PatchCore's coreset sampling ratio (1.0: every patch kept)")
    p.add_argument("--goods", default="augment",
                   help=f"generator arms of the good images, comma-separated, of: {', '.join(ARMS)} "
                        "(each but augment in its own folder <out>/<arm>/)")
    p.add_argument("--threads", type=int, default=0, help="torch threads in this process (0: torch's default)")
    p.add_argument("--summarise", action="store_true",
                   help="fit nothing: print the tables of the models already in --out (an interrupted study)")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    prof = replace(get_profile("cpu"), name=f"cpu-{a.size}px", size=a.size)
    shots: list[int | str] = [v if v == "full" else int(v) for v in a.shots.split(",")]
    arms = a.goods.split(",")
    unknown = [g for g in arms if g not in ARMS]
    if unknown:
        p.error(f"--goods: unknown arm(s) {', '.join(unknown)}; choose from {', '.join(ARMS)}")
    by_arm: dict[str, dict[str, dict]] = {}
    for arm in arms:
        out = a.out if arm == "augment" else a.out / arm  # augment: the layout of earlier studies
        generator: GoodsConfig | None = (None if arm == "augment" else VaeGoodConfig(arm) if arm == "vae"
                                         else TorchvisionGoodConfig(arm))
        docs = by_arm.setdefault(arm, {})
        for cat, sub in CATEGORIES:
            if cat not in a.categories.split(","):
                continue
            if a.summarise:
                if (out / cat / "fewshot.json").is_file():
                    docs[cat] = json.loads((out / cat / "fewshot.json").read_text())
                    print(format_fewshot_table(docs[cat]), flush=True)
                continue
            doc = run_fewshot_benchmark(a.datasets / sub, out / cat, shots=shots, generated=a.generated,
                                        seeds=[int(s) for s in a.seeds.split(",")], profile=prof,
                                        detectors=a.detectors.split(","), progress=False, generator=generator,
                                        detector_config=DetectorConfig(epochs=a.epochs, steps=a.steps,
                                                                       coreset=a.coreset))
            print(format_fewshot_table(doc), flush=True)
            docs[cat] = doc
        print(f"[{arm}] " + overall(docs), flush=True)
    if len([d for d in by_arm.values() if d]) > 1:
        print(arms_table({arm: d for arm, d in by_arm.items() if d}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
