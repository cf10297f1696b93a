"""How well a mask is read back from a DualAnoDiff part image, per part background.

For every few-shot training defect of each dataset, the ideal part image (the real defect inside
its real mask, on a flat background) is segmented with `anomalyforge.masks.part.segment_part`
and compared with the real mask (IoU). This is the ceiling of DualAnoDiff's mask step: a
generated part can only be worse. `auto` is `choose_background` on the defects' own pixels
(what `dualanodiff` does per defect type; here per dataset, pooled over its types).

    .venv/bin/python benchmarks/bench_part_masks.py ../shared/datasets/mvtec_ad/bottle \
        ../shared/datasets/magnetic_tile ../shared/datasets/mvtec_loco/juice_bottle --out part_masks.json
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    from anomalyforge.data import few_shot_split, load_dataset
    from anomalyforge.data.io import read_image, read_mask
    from anomalyforge.masks.part import BACKGROUND_CANDIDATES, choose_background, part_image, segment_part
    from anomalyforge.masks.placement import iou

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", nargs="+", type=Path, help="category folders")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--out", type=Path, default=Path("part_masks.json"))
    args = ap.parse_args(argv)
    rows = []
    for path in args.data:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            split = few_shot_split(load_dataset(path), progress=False)
        defects = [(read_image(s.image, args.size), read_mask(s.mask, args.size))
                   for ss in split.train_defects.values() for s in ss]
        auto_name, auto_bg = choose_background(np.concatenate([img[m > 0] for img, m in defects]))
        for name, bg in [("auto", auto_bg)] + list(BACKGROUND_CANDIDATES.items()):
            ious = np.array([iou(segment_part(part_image(img, m, bg), bg), m) for img, m in defects])
            rows.append({"data": split.category, "background": name if name != "auto" else f"auto ({auto_name})",
                         "n": len(ious), "mean_iou": round(float(ious.mean()), 4),
                         "median_iou": round(float(np.median(ious)), 4), "min_iou": round(float(ious.min()), 4),
                         "below_0.5": int((ious < 0.5).sum())})
    print(f"{'data':<16} {'background':<18} {'n':>4} {'mean IoU':>9} {'median':>7} {'min':>6} {'<0.5':>5}")
    for r in rows:
        print(f"{r['data']:<16} {r['background']:<18} {r['n']:>4} {r['mean_iou']:>9.3f} {r['median_iou']:>7.3f} "
              f"{r['min_iou']:>6.3f} {r['below_0.5']:>5}")
    args.out.write_text(json.dumps({"size": args.size, "rows": rows}, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
