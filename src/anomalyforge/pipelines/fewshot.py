"""Few-shot unsupervised detection: detectors from K good images, with and without generated goods.

For each seed, K good training images are drawn (a seeded permutation of the split's good
training images; the first K, so a larger K contains the smaller ones; K "full" = all of them).
Each detector is fitted on the K images alone, and on the K images plus `generated` good images
made from them (`anomalyforge.synth.good.augment_goods`, SDEdit variations from a latent
diffusion model with `diffusion=DiffusionGoodConfig(...)`, or TVG's generators with `generator=`:
the variance-aware VAE or full TVG, `VaeGoodConfig`, or a torchvision augmentation arm,
`TorchvisionGoodConfig`; the choice is saved in the study's config); the generated goods of one
(seed, K) are the same for every detector, so the paired gain (with minus without, per seed)
compares like with like. Detectors: `af-patchcore` (ours, `anomalyforge.inspect.patchcore`: the
memory bank keeps every patch, coreset 1.0, capped at the profile's `pc_max_bank` by greedy
coreset selection) and anomalib's `patchcore`, `padim`, `cflow`, `fastflow`, `stfpm`
(`anomalyforge.inspect.anomalib_detectors`, on the offline EfficientNet-Lite0 or the profile's
TAB backbone, settings in `DetectorConfig`). Every model is fixed by this schedule; the test split
(the same held-out defects and test goods as the main benchmark) is read once, after the first
fit. Results go to `<out>/fewshot.json`, rewritten atomically after each model, so an interrupted
run resumes, and the same study asked for with more seeds, shots or detectors (`GRID`) adds their
rows to the folder (its config lists the union); any other setting that differs is refused.
`fewshot.html` (table and curves) and `fewshot.png` are written at the end.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from anomalyforge import __version__
from anomalyforge.atomic import check_output_dir, write_json_atomic
from anomalyforge.data import few_shot_split, load_dataset
from anomalyforge.data.io import read_image
from anomalyforge.diffusion.loading import load_ldm
from anomalyforge.errors import ConfigError, DataError
from anomalyforge.formats.schema import read_json, refuse_other_job
from anomalyforge.inspect.anomalib_detectors import AnomalibDetector, DetectorConfig, check_detectors
from anomalyforge.inspect.evaluate import TestSet, localization_metrics
from anomalyforge.inspect.patchcore import PatchCore
from anomalyforge.inspect.profiles import Profile, backbone_arch, backbone_identity, backbone_weights, get_profile
from anomalyforge.report.fewshot import write_fewshot_report
from anomalyforge.seeds import Stream, numpy_rng
from anomalyforge.synth.good import (
    DiffusionGoodConfig,
    GoodAugmentConfig,
    GoodsConfig,
    augment_goods,
    diffuse_goods,
    goods_generator,
)

FEWSHOT_JSON = "fewshot.json"
SUMMARY_KEYS = (("image", "auroc"), ("pixel", "auroc"), ("pixel", "ap"), ("pixel", "aupro"))
OWN_PATCHCORE = "af-patchcore"  # anomalyforge's own PatchCore; the other names are anomalib's models
FULL = "full"  # K = every good training image


def resolve_shots(shots: Sequence[int | str], n_good: int) -> tuple[int, ...]:
    """Shot counts with "full" replaced by `n_good` (the split's good training images)."""
    out = []
    for v in shots:
        if isinstance(v, str) and v.strip().lower() == FULL:
            out.append(n_good)
        else:
            try:
                out.append(int(v))
            except ValueError:
                raise ConfigError(f"shots must be positive integers or {FULL!r}, got {v!r}") from None
    return _positive_ints("shots", out)


def _positive_ints(name: str, values: Sequence[int], allow_zero: bool = False) -> tuple[int, ...]:
    out = tuple(dict.fromkeys(int(v) for v in values))
    if not out or any(v < (0 if allow_zero else 1) for v in out):
        raise ConfigError(f"{name} must be {'non-negative' if allow_zero else 'positive'} integers, got {list(values)}")
    return out


def shot_indices(n_good: int, shots: int, seed: int) -> np.ndarray:
    """Indices of the `shots` good training images used with `seed` (nested over shots)."""
    if shots > n_good:
        raise ConfigError(f"{shots} shots asked for, but the split has {n_good} good training images")
    return numpy_rng(seed, Stream.SHOTS).permutation(n_good)[:shots]


GRID = ("seeds", "shots", "detectors")  # config keys a study may extend: they only add rows


def _extend_grid(old: dict, new: dict) -> None:
    """`new`'s config grid (`GRID`) becomes the union with `old`'s, old entries first."""
    for key in GRID:
        new[key] = list(dict.fromkeys([*old.get(key, []), *new[key]]))


def _mean_std(vals: list[float]) -> tuple[float | None, float | None]:
    return (float(np.mean(vals)), float(np.std(vals))) if vals else (None, None)


def summarise(rows: dict[str, dict]) -> list[dict]:
    """Mean and standard deviation over seeds per (detector, shots, generated); rows with
    generated goods also get the paired gain over the same seeds' rows without (`gain_*`: mean
    and standard deviation of the per-seed differences) and the mean time per model."""
    groups: dict[tuple[str, int, int], list[dict]] = {}
    for r in rows.values():
        groups.setdefault((r.get("detector", OWN_PATCHCORE), r["shots"], r["generated"]), []).append(r)
    out = []
    for (d, k, g), rs in sorted(groups.items()):
        entry: dict = {"detector": d, "shots": k, "generated": g, "seeds": len(rs),
                       "time_s": float(np.mean([r.get("time_s", 0.0) for r in rs]))}
        base = {r["seed"]: r for r in groups.get((d, k, 0), [])} if g else {}
        for level, metric in SUMMARY_KEYS:
            key = f"{level}_{metric}"
            entry[key], entry[f"{key}_std"] = _mean_std(
                [r["localization"][level][metric] for r in rs if r["localization"][level][metric] is not None])
            if g:
                diffs = [r["localization"][level][metric] - base[r["seed"]]["localization"][level][metric]
                         for r in rs if r["seed"] in base and r["localization"][level][metric] is not None
                         and base[r["seed"]]["localization"][level][metric] is not None]
                entry[f"gain_{key}"], entry[f"gain_{key}_std"] = _mean_std(diffs)
        out.append(entry)
    return out


def _fit_predict(det: str, train: np.ndarray, test: TestSet, seed: int, prof: Profile,
                 dcfg: DetectorConfig) -> tuple[np.ndarray, np.ndarray, dict]:
    """Fit detector `det` on `train`, return test maps, image scores and row details."""
    if det == OWN_PATCHCORE:
        pc = PatchCore(prof.pc_levels, 1.0, prof.pc_projection, prof.pc_sigma, seed, prof.device,
                       weights=backbone_weights(prof), max_bank=prof.pc_max_bank, candidates=prof.pc_candidates,
                       arch=backbone_arch(prof))
        pc.fit(train, progress=False)
        assert pc.bank is not None  # set by fit()
        maps = pc.predict(test.images, progress=False)
        return maps, maps.reshape(len(maps), -1).max(1).astype(np.float64), {"bank": int(len(pc.bank))}
    model = AnomalibDetector(det, dcfg, seed).fit(train)
    maps, scores = model.predict(test.images)
    return maps, scores, {}


def run_fewshot_benchmark(data: Path, out: Path, shots: Sequence[int | str] = (1, 2, 4, 8), generated: int = 64,
                          seeds: Sequence[int] = (0, 1, 2), profile: str | Profile = "cpu",
                          category: str | None = None,
                          data_format: str | None = None, augment: GoodAugmentConfig | None = None,
                          diffusion: DiffusionGoodConfig | None = None, generator: GoodsConfig | None = None,
                          progress: bool = True, detectors: Sequence[str] = (OWN_PATCHCORE,),
                          detector_config: DetectorConfig | None = None) -> dict:
    """Few-shot `detectors` with / without `generated` generated good images; see module doc.

    `detector_config` sets anomalib's detectors (epochs, batch size, coreset; the image size is
    the profile's). Returns the document also written to `<out>/fewshot.json` (config, one row
    per model, and a summary over seeds with paired gains)."""

    prof = get_profile(profile)
    dets = check_detectors(list(detectors), extra=(OWN_PATCHCORE,))
    dcfg = replace(detector_config or DetectorConfig(), size=prof.size, device=str(prof.device or "cpu"))
    seeds = _positive_ints("seeds", seeds, allow_zero=True)
    if int(generated) < 0:
        raise ConfigError(f"generated must be >= 0, got {generated}")
    variants = (0, int(generated)) if generated else (0,)
    if diffusion is not None and generator is not None:
        raise ConfigError("choose one generator of good images: SDEdit (--base-model) or --goods, not both")
    aug = augment or GoodAugmentConfig()
    data, out = Path(data), Path(out)
    check_output_dir(out, [data])  # never inside the dataset, never below a file
    ds = load_dataset(data, category=category, data_format=data_format)
    split = few_shot_split(ds, progress=progress)
    split.check_disjoint()
    shots = resolve_shots(shots, len(split.train_good))
    for k in shots:
        shot_indices(len(split.train_good), k, 0)  # fail early when K exceeds the good images
    weights = backbone_weights(prof)
    if weights != "imagenet":  # anomalib's detectors load the profile's TAB backbone too
        dcfg = replace(dcfg, backbone=backbone_arch(prof), weights=weights)
    config = {"shots": list(shots), "n_good": len(split.train_good), "generated": int(generated),
              "seeds": list(seeds), "size": prof.size,
              "augment": None if diffusion or generator else aug.to_dict(),
              "diffusion": diffusion.to_dict() if diffusion else None, "detectors": list(dets),
              "patchcore": {"levels": list(prof.pc_levels), "coreset": 1.0, "max_bank": prof.pc_max_bank,
                            "sigma": prof.pc_sigma, "projection": prof.pc_projection},
              "anomalib": dcfg.to_dict() if set(dets) - {OWN_PATCHCORE} else None}
    if generator is not None:  # only then, so studies made before these generators still resume
        config["goods"] = generator.to_dict()
    if prof.backbone != "imagenet":  # a TAB backbone is part of the study's identity (older files: ImageNet)
        config["backbone"] = prof.backbone
    path = out / FEWSHOT_JSON
    doc: dict[str, Any]
    doc = {"category": ds.category, "data": str(data.resolve()), "profile": prof.name, "config": config,
           "backbone": backbone_identity(prof),
           "created": datetime.now(UTC).isoformat(timespec="seconds"), "version": __version__,
           "rows": {}}
    if path.is_file():
        old = read_json(path, "few-shot results")
        if not isinstance(old, dict):
            raise DataError(path, "expected a JSON object at the top level")
        other = {**old, "config": {k: v for k, v in old.get("config", {}).items() if k not in GRID}}
        refuse_other_job(out, other, {**doc, "config": {k: v for k, v in config.items() if k not in GRID}},
                         ("category", "config"), what="few-shot study")
        _extend_grid(old.get("config", {}), config)
        doc["rows"] = old.get("rows", {})
    todo = [(s, k, g) for s in seeds for k in shots for g in variants
            if any(f"{d}/s{s}-k{k}-g{g}" not in doc["rows"] for d in dets)]
    ldm = None
    if diffusion is not None and any(g for _, _, g in todo):  # load once, and fail before any output

        ldm = load_ldm(diffusion.base_model, diffusion.device, diffusion.precision)
    make_goods = None
    if generator is not None and any(g for _, _, g in todo):  # models load once, before any output
        make_goods = goods_generator(generator, ds.category)
    out.mkdir(parents=True, exist_ok=True)

    test: list[TestSet] = []
    bar = tqdm(total=sum(f"{d}/s{s}-k{k}-g{g}" not in doc["rows"] for s, k, g in todo for d in dets),
               desc="few-shot detectors", disable=not progress)
    for s, k, g in todo:
        t0 = time.perf_counter()
        chosen = [split.train_good[i] for i in shot_indices(len(split.train_good), k, s)]
        goods = np.stack([read_image(x.image, prof.size) for x in chosen])
        if g:
            extra = (diffuse_goods(goods, g, seed=s, config=diffusion, progress=progress, ldm=ldm) if diffusion
                     else make_goods(goods, g, s) if make_goods is not None
                     else augment_goods(goods, g, seed=s, config=aug))
            train = np.concatenate([goods, extra])
        else:
            train = goods
        t_goods = time.perf_counter() - t0  # shared by the detectors of this (seed, K, generated)
        for det in dets:
            key = f"{det}/s{s}-k{k}-g{g}"
            if key in doc["rows"]:
                continue
            if not test:  # read once, after the first training set is fixed; not in any model's time
                test.append(TestSet.load(split, prof.size, progress))
            t1 = time.perf_counter()
            maps, scores, extra_info = _fit_predict(det, train, test[0], s, prof, dcfg)
            loc = localization_metrics(test[0], maps, scores, progress=False)
            doc["rows"][key] = {"detector": det, "seed": s, "shots": k, "generated": g, "localization": loc,
                                "goods": [str(x.image) for x in chosen], **extra_info,
                                "time_s": round(time.perf_counter() - t1 + t_goods, 2)}
            doc["summary"] = summarise(doc["rows"])
            write_json_atomic(path, doc)
            bar.update()
    bar.close()
    doc["summary"] = summarise(doc["rows"])

    write_fewshot_report(out)  # fewshot.html + fewshot.png
    return doc


def format_fewshot_table(doc: dict) -> str:
    """Plain-text table: detector x shots x generated goods -> mean (std) over seeds, in %, with
    the paired gain in image AUROC and the mean seconds per model."""
    def cell(e: dict, key: str) -> str:
        m, s = e.get(key), e.get(f"{key}_std")
        if m is None or s is None:  # both or neither
            return f"{'-':>13}"
        return f"{100 * m:7.1f}{'':6}" if e.get("seeds", 2) < 2 else f"{100 * m:7.1f} ({100 * s:3.1f})"  # 1: no spread

    head = f"{'detector':>13}{'shots':>6}{'generated':>10}{'seeds':>6}" + "".join(
        f"{h:>13}" for h in ("image AUROC", "pixel AUROC", "pixel AP", "AUPRO", "gain img")) + f"{'s/model':>9}"
    lines = [f"{doc.get('category')} | few-shot detectors | profile {doc.get('profile')}", head]
    for e in doc.get("summary", []):
        gain = cell(e, "gain_image_auroc") if e["generated"] else f"{'':>13}"
        lines.append(f"{e.get('detector', OWN_PATCHCORE):>13}{e['shots']:>6}{e['generated']:>10}{e['seeds']:>6}"
                     + "".join(cell(e, f"{lv}_{m}") for lv, m in SUMMARY_KEYS) + gain
                     + f"{e.get('time_s', 0.0):9.1f}")
    return "\n".join(lines)
