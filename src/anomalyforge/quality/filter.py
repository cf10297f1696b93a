"""Low-quality sample filtering of a generated run by Anomaly Region Score (GAA).

`filter_run` scores every pair of a run folder (any generator's output) with the ARS
discriminator trained on the category's good *training* images, writes ``scores.ars`` into each
manifest record, and per defect type keeps the highest-scoring pairs (the ones whose masked region
looks most anomalous), marking the others ``"rejected": true`` without dropping their scores.
The manifest is rewritten atomically; the discriminator is cached in ``RUN/ars/``, and a
re-filter with the same discriminator (another keep or stratification) only re-selects.
By default (`stratify="source"`) each type's budget is shared over the real defects the pairs
were made from; `stratify="type"` ranks a type's pairs together, as the GAA paper does.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from anomalyforge.atomic import write_json_atomic
from anomalyforge.data import few_shot_split, load_dataset
from anomalyforge.data.fitdata import FitData
from anomalyforge.data.io import read_image, read_mask
from anomalyforge.errors import ConfigError, DataError
from anomalyforge.formats.manifest import MANIFEST, check_files, read_pairs, write_manifest
from anomalyforge.formats.run import RUN_JSON, RunInfo, verified_split
from anomalyforge.formats.schema import differing
from anomalyforge.quality.ars import ARSConfig, train_or_load


# ---- where the good images come from -----------------------------------------------------------
def run_good_images(run: Path, info: RunInfo | None = None) -> tuple[list[Path], int]:
    """The good training images of a run's category and the run's image size, from run.json
    (its recorded training files, after checking they are still the current split's)."""

    info = info or RunInfo.read(run)
    verified_split(run, info)
    good = info.good_images(Path(run) / RUN_JSON)
    return good, int(info.size or ARSConfig.size)


def _train_good(split, where: Path) -> list[Path]:
    if not split.train_good:
        raise DataError(where, "no good training images to train the ARS discriminator on")
    return [s.image for s in split.train_good]


# ---- filtering ---------------------------------------------------------------------------------
def _n_keep(n: int, keep: int | None, keep_ratio: float | None) -> int:
    if keep is not None:
        return min(n, keep)
    if keep_ratio is not None:
        return min(n, math.ceil(n * keep_ratio))
    return n


STRATIFY = ("type", "source")


def source_defect(record: dict) -> str | None:
    """The real few-shot defect a pair was made from (``params.defect``), when its method records one."""
    v = (record.get("params") or {}).get("defect")
    return str(v) if v else None


def _quotas(sizes: Sequence[int], n: int) -> list[int]:
    """Split `n` (<= sum(sizes)) over groups in proportion to their sizes: largest remainder, ties
    by order. No quota exceeds its group: a rounded-up share is at most ceil(exact) <= size."""
    total = sum(sizes)
    if total == 0:
        return [0] * len(sizes)
    exact = [n * k / total for k in sizes]
    q = [math.floor(e) for e in exact]
    for i in sorted(range(len(sizes)), key=lambda i: (q[i] - exact[i], i))[:n - sum(q)]:
        q[i] += 1
    return q


def select(records: Sequence[dict], keep: int | None = None, keep_ratio: float | None = None,
           stratify: str = "source") -> None:
    """Mark, per defect type, all but the `keep` (or ceil(keep_ratio * n)) highest ``scores.ars``
    as ``rejected``; unscored records (empty masks) rank last. Edits `records` in place.

    `stratify="source"` splits each type's budget over the real defects the pairs were made from
    (in proportion to their pairs) and ranks within each: the filter then drops bad renderings of
    every defect instead of whole defects that are merely less salient (subtle cracks, uneven
    shading), which keeps the few-shot variety. Pairs without a recorded source form one group."""
    if stratify not in STRATIFY:
        raise ConfigError(f"stratify {stratify!r}: expected one of {', '.join(STRATIFY)}")
    by_type: dict[str, list[dict]] = {}
    for r in records:
        by_type.setdefault(r.get("defect_type", ""), []).append(r)

    def key(r: dict) -> float:
        v = r.get("scores", {}).get("ars")
        return -math.inf if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)

    for recs in by_type.values():
        n = _n_keep(len(recs), keep, keep_ratio)
        groups: dict[str, list[dict]] = {}
        for r in recs:
            groups.setdefault((source_defect(r) or "") if stratify == "source" else "", []).append(r)
        names = sorted(groups)
        for name, q in zip(names, _quotas([len(groups[g]) for g in names], n), strict=False):
            ranked = sorted(groups[name], key=lambda r: (-key(r), str(r.get("id"))))
            for i, r in enumerate(ranked):
                r["rejected"] = i >= q


def filter_run(run: str | Path, keep: int | None = None, keep_ratio: float | None = None, seed: int = 0,
               data: FitData | str | Path | None = None, config: ARSConfig | None = None,
               progress: bool = True, batch_size: int = 16, stratify: str = "source") -> dict:
    """Score every pair of `run` by ARS and keep the best `keep` (or `keep_ratio`) per defect type.

    `stratify` = "source" (default: share each type's budget over the real defects the pairs came
    from, see `select`; pairs of methods that record no source defect are ranked per type) or
    "type" (GAA as published: rank all pairs of a type together). On Magnetic Tile croppaste,
    per-type ranking dropped whole subtle defects and cost 10 points of pixel AP; by source it
    did not (benchmarks/bench_gaa_ablation.py).

    `data` overrides where the good training images come from (a FitData, or a dataset path);
    by default they are found from the run's run.json. With neither `keep` nor `keep_ratio`, pairs
    are scored and none is rejected. Returns {"counts": {type: {"total", "kept", "rejected",
    "min_kept_ars"}}, "config": ...}; the same summary is saved as RUN/ars/filter.json.
    """

    run = Path(run)
    if not run.is_dir():
        raise DataError(run, "run folder not found")
    if keep is not None and keep_ratio is not None:
        raise ConfigError("give --keep or --keep-ratio, not both")
    if keep is not None and keep < 1:
        raise ConfigError(f"--keep must be at least 1 pair per defect type (0 would reject every pair), got {keep}")
    if keep_ratio is not None and not 0 < keep_ratio <= 1:
        raise ConfigError(f"--keep-ratio must be in (0, 1], got {keep_ratio}")
    if stratify not in STRATIFY:
        raise ConfigError(f"--stratify {stratify!r}: expected one of {', '.join(STRATIFY)}")
    if not (run / MANIFEST).is_file():
        raise DataError(run / MANIFEST, "manifest not found (is this a generation run folder?)")
    pairs = read_pairs(run, include_rejected=True)
    if not pairs:
        raise DataError(run / MANIFEST, "manifest has no records")
    check_files(run, pairs)  # check every referenced file before any work
    records = [p.to_dict() for p in pairs]  # `select` ranks plain records
    if isinstance(data, FitData):
        good, size = [s.image for s in data.good], data.size
    elif data is not None:

        good = _train_good(few_shot_split(load_dataset(Path(data)), progress=False), Path(data))
        size = config.size if config else ARSConfig.size
    else:
        good, size = run_good_images(run)
    cached = run / "ars" / "config.json"
    if config is None and cached.is_file():  # re-filtering reuses the cached discriminator's settings
        try:
            config = ARSConfig.from_dict(json.loads(cached.read_text())["config"])
        except (json.JSONDecodeError, KeyError, TypeError, ConfigError):
            config = None
    cfg = config or ARSConfig(size=size)
    # re-filtering (another keep or stratify) with the same discriminator only re-selects
    rescore = not _scores_current(run, records, cfg, seed)
    scorer = train_or_load(good, run / "ars", cfg, seed=seed, progress=progress) if rescore else None
    for i in tqdm(range(0, len(records) if rescore else 0, batch_size), desc="ARS scoring",
                  disable=not progress):
        chunk = records[i:i + batch_size]
        assert scorer is not None  # the loop only runs when rescore
        imgs = [read_image(run / r["image"], cfg.size) for r in chunk]
        masks = [read_mask(run / r["mask"], cfg.size) for r in chunk]
        for r, s in zip(chunk, scorer.score(imgs, masks), strict=False):
            r.setdefault("scores", {})
            r["scores"] = dict(r["scores"] or {}, ars=None if np.isnan(s) else round(float(s), 6))
    select(records, keep, keep_ratio, stratify)
    write_manifest(run, records)
    counts: dict[str, dict] = {}
    for r in records:
        c = counts.setdefault(r.get("defect_type", ""), {"total": 0, "kept": 0, "rejected": 0, "min_kept_ars": None})
        c["total"] += 1
        c["rejected" if r["rejected"] else "kept"] += 1
        a = r["scores"].get("ars")
        if not r["rejected"] and a is not None:
            c["min_kept_ars"] = a if c["min_kept_ars"] is None else min(c["min_kept_ars"], a)
    summary = {"keep": keep, "keep_ratio": keep_ratio, "stratify": stratify, "seed": seed, "config": asdict(cfg),
               "counts": counts}
    write_json_atomic(run / "ars" / "filter.json", summary)
    return summary


def _scores_current(run: Path, records: Sequence[dict], cfg: ARSConfig, seed: int) -> bool:
    """True when every record already holds an ARS from this discriminator (same settings and
    seed, per the last filter.json), so a re-filter only re-selects."""
    f = run / "ars" / "filter.json"
    if not f.is_file():
        return False
    try:
        last = json.loads(f.read_text())
    except (json.JSONDecodeError, OSError):
        return False
    if differing(last, {"config": asdict(cfg), "seed": seed}, ("config", "seed")):
        return False
    return all("ars" in (r.get("scores") or {}) for r in records)


def format_summary(summary: dict) -> str:
    """One line per defect type: kept / total and the lowest kept ARS."""
    lines = []
    for t, c in summary["counts"].items():
        lo = "n/a" if c["min_kept_ars"] is None else f"{c['min_kept_ars']:.4f}"
        lines.append(f"{t}: kept {c['kept']}/{c['total']} (rejected {c['rejected']}), lowest kept ARS {lo}")
    return "\n".join(lines)
