"""Export a generation run in a layout other tools read as is (MVTec AD), plus manifest helpers.

MVTec AD layout written under `<out>/<category>/`:
  train/good/NNN.png               good training images of the run (resized to the run size) that
                                   are the background (manifest `source`) of NO exported defect
  test/good/NNN.png                a seeded `test_good` share of the run's good images (never in
                                   train/good; they may be backgrounds of test defects: neither is
                                   trained on)
  test/<type>/NNN.png              the generated defect images (rejected pairs left out, and pairs
                                   whose background went to train/good)
  ground_truth/<type>/NNN_mask.png their masks (0/255)
  anomalyforge_export.json         which manifest id became which file, the split, the run's config
  README.txt                       how the goods were split and how many pairs were left out
The folder is built under a temporary name and renamed at the end: never half-written.

Why the split: a generated defect is a good image plus a local defect. If that good image is also
in train/good, a detector trained on the export has seen every pixel of the defect image but the
defect, and scores too well. A run usually spreads its pairs over all of its good images, so
"drop every background from train/good" would leave train/good empty, and "keep only the pairs on
test/good backgrounds" would keep about `test_good` of the pairs. Instead the goods left after
test/good are partitioned: goods that are no pair's background go to train/good for free; then the
goods carrying the FEWEST pairs are moved to train/good (their pairs are left out) until
`train_share` of them is there; the rest stay backgrounds only (not exported as goods). With pairs
spread evenly this keeps about (1 - train_share) of the pairs and train_share of the goods: at the
default 0.5, e.g. 600 pairs on 188 goods -> ~94 train goods and ~300 test defects, enough for a
detector (which saturates at tens of good images) and for tight per-type metrics.
`shared_backgrounds=True` restores the old, leaky export (every good in train/good, all pairs).
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import numpy as np

from anomalyforge.atomic import check_output_dir, copy_atomic, write_json_atomic, write_png_atomic, write_text_atomic
from anomalyforge.data.io import read_image
from anomalyforge.errors import ConfigError, DataError
from anomalyforge.formats.manifest import PairRecord, check_files, open_run, read_manifest, write_manifest
from anomalyforge.formats.run import RUN_JSON, verified_split

__all__ = ["export_run", "read_manifest", "split_goods", "write_manifest"]

FORMATS = ("mvtec",)


def _key(path: str | Path | None) -> str:
    return os.path.normpath(os.path.abspath(path)) if path else ""


def split_goods(goods: list[str], recs: list[PairRecord], backgrounds: list[str], seed: int,
                test_good: float = 0.1, train_share: float = 0.5, shared_backgrounds: bool = False) -> dict:
    """Partition a run's good images for export; returns {"train", "test", "background_only"} (lists
    of goods, in run order) and "kept" / "left_out" (the records exported / left out).
    `backgrounds[i]` is the absolute path of the good image record i was painted on ("" if none).

    test: a seeded `test_good` share (at least one when > 0 and there are >= 2 goods). train: the
    other goods that are no kept record's background, i.e. train ∩ backgrounds(kept) = ∅ unless
    `shared_backgrounds` (see the module docstring for the rule and why)."""
    n_test = 0 if test_good == 0 or len(goods) < 2 else min(len(goods) - 1, max(1, round(test_good * len(goods))))
    rng = np.random.default_rng(int(seed))
    held = set(rng.permutation(len(goods))[:n_test].tolist())
    test = [g for i, g in enumerate(goods) if i in held]
    pool = [g for i, g in enumerate(goods) if i not in held]
    if shared_backgrounds:
        return {"train": pool, "test": test, "background_only": [], "kept": list(recs), "left_out": []}
    bg = [_key(b) for b in backgrounds]
    uses: dict[str, int] = {}
    for k in bg:
        if k:
            uses[k] = uses.get(k, 0) + 1
    want = max(1, math.ceil(train_share * len(pool))) if pool else 0
    # the fewest pairs first; ties broken by the seeded order, not by file name
    order = np.random.default_rng([int(seed), 1]).permutation(len(pool))
    ranked = sorted(order.tolist(), key=lambda i: uses.get(_key(pool[i]), 0))
    chosen = {i for j, i in enumerate(ranked) if j < want or uses.get(_key(pool[i]), 0) == 0}
    train = [g for i, g in enumerate(pool) if i in chosen]
    background_only = [g for i, g in enumerate(pool) if i not in chosen]
    in_train = {_key(g) for g in train}
    kept = [r for r, k in zip(recs, bg, strict=True) if k not in in_train]
    left_out = [r for r, k in zip(recs, bg, strict=True) if k in in_train]
    return {"train": train, "test": test, "background_only": background_only, "kept": kept, "left_out": left_out}


def _readme(category: str, split: dict, n_pairs: int, test_good: float, train_share: float,
            shared: bool) -> str:
    n_train, n_test, n_bg = len(split["train"]), len(split["test"]), len(split["background_only"])
    lines = [f"anomalyforge export of a generation run: MVTec AD layout, category {category}.", ""]
    if shared:
        lines += ["Split: SHARED backgrounds (--shared-backgrounds). train/good holds every good image",
                  "not in test/good, including the backgrounds of the test defects: a detector trained",
                  "on this export has seen those images and will score too well.", ""]
    else:
        lines += ["Split: held-out backgrounds. No image in train/good is the background (the good image",
                  "a defect was drawn on) of any image in test/<type>. test/good is a seeded",
                  f"{test_good:g} share of the good images; of the rest, goods that are no defect's",
                  "background go to train/good, then the goods carrying the fewest defects until",
                  f"{train_share:g} of them are there (their defects are left out); the remaining goods",
                  "are backgrounds only and are not exported as good images.", ""]
    lines += [f"good images: {n_train} in train/good, {n_test} in test/good, {n_bg} background-only (not exported)",
              f"defect pairs: {len(split['kept'])} exported of {n_pairs}; {len(split['left_out'])} left out "
              "(background in train/good); rejected pairs are never exported",
              "anomalyforge_export.json lists which manifest id became which file and the split.", ""]
    return "\n".join(lines)


def export_run(run: Path, out: Path, format: str = "mvtec", test_good: float = 0.1,
               require_complete: bool = False, train_share: float = 0.5,
               shared_backgrounds: bool = False) -> Path:
    """Write the run's pairs (and its good training images) as an MVTec AD category; returns its folder.

    `test_good` is the share of the good images written to test/good instead of train/good
    (at least one when > 0; drawn with the run's seed, so the same run exports the same split).
    By default train/good holds no background of an exported defect: `train_share` of the other
    goods go to train/good (those carrying the fewest pairs; their pairs are left out), see the
    module docstring. `shared_backgrounds=True` writes every such good and every pair (leaky).
    Refuses a run whose training files are not its data's current few-shot split; an incomplete
    run is exported with a warning on stderr, or refused with `require_complete`."""
    if format not in FORMATS:
        raise ConfigError(f"unknown export format {format!r}; available: {', '.join(FORMATS)}")
    if not isinstance(test_good, (int, float)) or not 0.0 <= test_good < 1.0:
        raise ConfigError(f"test_good must be a fraction in [0, 1), got {test_good!r}")
    if not isinstance(train_share, (int, float)) or not 0.0 < train_share < 1.0:
        raise ConfigError(f"train_share must be a fraction in (0, 1), got {train_share!r}")
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
    goods = [str(p) for p in cfg.good_images(run / RUN_JSON)]
    backgrounds = [str(cfg.resolve(r.source)) if r.source else "" for r in recs]
    split = split_goods(goods, recs, backgrounds, int(cfg.seed or 0), test_good=test_good,
                        train_share=train_share, shared_backgrounds=shared_backgrounds)
    if not split["kept"]:
        raise DataError(run, "no pair is left to export once train/good holds none of their backgrounds; "
                             "lower train_share")
    tmp = out / f".{category}.partial"
    if tmp.exists():
        shutil.rmtree(tmp)
    index: dict = {"run": str(run.resolve()), "method": cfg.method, "config": cfg.config,
                   "test": {}, "train_good": {}, "test_good": {}, "test_good_fraction": test_good,
                   "split": {"backgrounds": "shared" if shared_backgrounds else "held_out",
                             "train_share": None if shared_backgrounds else train_share,
                             "pairs": len(recs), "pairs_exported": len(split["kept"]),
                             "pairs_left_out": len(split["left_out"]),
                             "left_out_ids": sorted(r.id for r in split["left_out"]),
                             "background_only_goods": split["background_only"]}}
    try:
        for name_, chosen in (("train", split["train"]), ("test", split["test"])):
            for k, src in enumerate(chosen):
                name = f"{k:03d}.png"
                write_png_atomic(tmp / name_ / "good" / name, read_image(src, size))
                index[f"{name_}_good"][name] = src
        kept: list[PairRecord] = split["kept"]
        for t in sorted({r.defect_type for r in kept}):
            for k, r in enumerate(sorted((r for r in kept if r.defect_type == t), key=lambda r: r.id)):
                copy_atomic(run / r.image, tmp / "test" / t / f"{k:03d}.png")
                copy_atomic(run / r.mask, tmp / "ground_truth" / t / f"{k:03d}_mask.png")
                index["test"][f"{t}/{k:03d}.png"] = r.id
        write_json_atomic(tmp / "anomalyforge_export.json", index)
        write_text_atomic(tmp / "README.txt", _readme(category, split, len(recs), test_good, train_share,
                                                      shared_backgrounds))
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest
