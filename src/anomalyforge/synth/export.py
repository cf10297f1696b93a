"""Export a generation run in a layout other tools read as is (MVTec AD), plus manifest helpers.

MVTec AD layout written under `<out>/<category>/`:
  train/good/NNN.png               the good training images the run used (resized to the run size)
  test/good/NNN.png                a seeded `test_good` share of those good images, moved out of
                                   train/good (other tools evaluate on test/good; never in both)
  test/<type>/NNN.png              the generated defect images (rejected pairs left out)
  ground_truth/<type>/NNN_mask.png their masks (0/255)
  anomalyforge_export.json         which manifest id became which file, and the run's config
The folder is built under a temporary name and renamed at the end: never half-written.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from anomalyforge.atomic import check_output_dir, copy_atomic, write_png_atomic, write_text_atomic
from anomalyforge.data.io import read_image
from anomalyforge.errors import ConfigError, DataError
from anomalyforge.formats.manifest import check_files, open_run, read_manifest, write_manifest
from anomalyforge.formats.run import RUN_JSON, verified_split

__all__ = ["export_run", "read_manifest", "write_manifest"]

FORMATS = ("mvtec",)


def export_run(run: Path, out: Path, format: str = "mvtec", test_good: float = 0.1,
               require_complete: bool = False) -> Path:
    """Write the run's pairs (and its good training images) as an MVTec AD category; returns its folder.

    `test_good` is the share of the good images written to test/good instead of train/good
    (at least one when > 0; drawn with the run's seed, so the same run exports the same split).
    Refuses a run whose training files are not its data's current few-shot split; an incomplete
    run is exported with a warning on stderr, or refused with `require_complete`."""
    if format not in FORMATS:
        raise ConfigError(f"unknown export format {format!r}; available: {', '.join(FORMATS)}")
    if not isinstance(test_good, (int, float)) or not 0.0 <= test_good < 1.0:
        raise ConfigError(f"test_good must be a fraction in [0, 1), got {test_good!r}")
    run, out = Path(run), Path(out)
    opened = open_run(run, require_complete)
    cfg, recs = opened.info, opened.kept
    check_output_dir(out, [cfg.data] if cfg.data else [], flag="export folder")
    if not recs:
        raise DataError(run, "run holds no generated pairs to export")
    category = str(cfg.category or "category").replace("/", "_")
    dest = out / category
    if dest.exists():
        raise ConfigError(f"{dest}: already exists; export into another folder")
    check_files(run, recs)
    verified_split(run, cfg)
    size = int(cfg.size)
    tmp = out / f".{category}.partial"
    if tmp.exists():
        shutil.rmtree(tmp)
    index: dict = {"run": str(run.resolve()), "method": cfg.method, "config": cfg.config,
                   "test": {}, "train_good": {}, "test_good": {}, "test_good_fraction": test_good}
    goods = [str(p) for p in cfg.good_images(run / RUN_JSON)]
    n_test = 0 if test_good == 0 or len(goods) < 2 else min(len(goods) - 1, max(1, round(test_good * len(goods))))
    held = set(np.random.default_rng(int(cfg.seed or 0)).permutation(len(goods))[:n_test].tolist())
    try:
        for split, chosen in (("train", [g for i, g in enumerate(goods) if i not in held]),
                              ("test", [g for i, g in enumerate(goods) if i in held])):
            for k, src in enumerate(chosen):
                name = f"{k:03d}.png"
                write_png_atomic(tmp / split / "good" / name, read_image(src, size))
                index[f"{split}_good"][name] = src
        types = sorted({r.defect_type for r in recs})
        for t in types:
            for k, r in enumerate(sorted((r for r in recs if r.defect_type == t), key=lambda r: r.id)):
                copy_atomic(run / r.image, tmp / "test" / t / f"{k:03d}.png")
                copy_atomic(run / r.mask, tmp / "ground_truth" / t / f"{k:03d}_mask.png")
                index["test"][f"{t}/{k:03d}.png"] = r.id
        write_text_atomic(tmp / "anomalyforge_export.json", json.dumps(index, indent=1, sort_keys=True))
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest
