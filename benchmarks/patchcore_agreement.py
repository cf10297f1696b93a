"""anomalyforge's PatchCore against anomalib's on the same backbone and data (issue 15).

    .venv/bin/python benchmarks/patchcore_agreement.py --data ../shared/datasets/mvtec_ad/bottle \
        [--which both|ours|anomalib] [--size 128] [--shots 5] [--generated 32]

Both on the offline EfficientNet-Lite0 levels 2-3 (strides 8, 16), 3x3 average pooling, every
patch of K good training images + `--generated` augmented goods (seed 0) in the bank (coreset 1.0
for both), sigma-4 smoothing; scored on the whole held-out test split. `--which both` prints
their pixel / image AUROC and the correlation of their maps; `ours` / `anomalib` runs one fit +
scoring only (both modules are imported either way), for timing one against the other from
outside the process.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from anomalyforge.data import few_shot_split, load_dataset
from anomalyforge.data.io import read_image
from anomalyforge.inspect.anomalib_detectors import AnomalibDetector, DetectorConfig
from anomalyforge.inspect.evaluate import TestSet, localization_metrics
from anomalyforge.inspect.patchcore import PatchCore
from anomalyforge.pipelines.fewshot import shot_indices
from anomalyforge.synth.good import augment_goods


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--which", default="both", choices=("both", "ours", "anomalib"))
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--shots", type=int, default=5)
    p.add_argument("--generated", type=int, default=32)
    a = p.parse_args(argv)
    split = few_shot_split(load_dataset(a.data), progress=False)
    goods = np.stack([read_image(split.train_good[i].image, a.size)
                      for i in shot_indices(len(split.train_good), a.shots, 0)])
    train = np.concatenate([goods, augment_goods(goods, a.generated, seed=0)])
    test = TestSet.load(split, a.size, False)
    out = {}
    if a.which in ("both", "ours"):
        pc = PatchCore((2, 3), 1.0, 64, 4.0, 0, "cpu", max_bank=None, candidates=None).fit(train, progress=False)
        m = pc.predict(test.images)
        out["ours"] = (m, m.reshape(len(m), -1).max(1).astype(np.float64))
    if a.which in ("both", "anomalib"):
        out["anomalib"] = AnomalibDetector("patchcore", DetectorConfig(size=a.size, coreset=1.0), 0).fit(
            train).predict(test.images)
    for name, (m, s) in out.items():
        loc = localization_metrics(test, m, s, progress=False)
        print(f"{name:>9}: image AUROC {100 * loc['image']['auroc']:.1f}  pixel AUROC {100 * loc['pixel']['auroc']:.1f}"
              f"  pixel AP {100 * loc['pixel']['ap']:.1f}  AUPRO {100 * loc['pixel']['aupro']:.1f}")
    if len(out) == 2:
        r = np.corrcoef(out["ours"][0].ravel(), out["anomalib"][0].ravel())[0, 1]
        print(f"map correlation {r:.4f}; image-score correlation "
              f"{np.corrcoef(out['ours'][1], out['anomalib'][1])[0, 1]:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
