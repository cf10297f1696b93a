"""Few-shot unsupervised detection: PatchCore from K good images, with and without generated goods.

For each seed, K good training images are drawn (a seeded permutation of the split's good
training images; the first K, so a larger K contains the smaller ones). PatchCore is fitted on
the K images alone, and on the K images plus `generated` good images made from them
(`anomalyforge.synth.good.augment_goods`, SDEdit variations from a latent diffusion model with
`diffusion=DiffusionGoodConfig(...)`, or TVG's generators with `generator=`: the variance-aware
VAE or full TVG, `VaeGoodConfig`, or a torchvision augmentation arm, `TorchvisionGoodConfig`;
the choice is saved in the study's config). The memory bank keeps every patch (coreset 1.0: at
1 shot a 10 % coreset would leave a hundred patches), capped at the profile's `pc_max_bank` by
greedy coreset selection. Every model is fixed by this schedule; the test split (the same held-out
defects and test goods as the main benchmark) is read once, after the first fit. Results go to
`<out>/fewshot.json`, rewritten atomically after each model, so an interrupted run resumes;
`fewshot.html` (table and curves) and `fewshot.png` are written at the end.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
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
from anomalyforge.inspect.evaluate import TestSet, localization_metrics
from anomalyforge.inspect.patchcore import PatchCore
from anomalyforge.inspect.profiles import Profile, backbone_identity, backbone_weights, get_profile
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


def summarise(rows: dict[str, dict]) -> list[dict]:
    """Mean and standard deviation over seeds per (shots, generated)."""
    groups: dict[tuple[int, int], list[dict]] = {}
    for r in rows.values():
        groups.setdefault((r["shots"], r["generated"]), []).append(r)
    out = []
    for (k, g), rs in sorted(groups.items()):
        entry: dict = {"shots": k, "generated": g, "seeds": len(rs)}
        for level, metric in SUMMARY_KEYS:
            vals = [r["localization"][level][metric] for r in rs if r["localization"][level][metric] is not None]
            entry[f"{level}_{metric}"] = float(np.mean(vals)) if vals else None
            entry[f"{level}_{metric}_std"] = float(np.std(vals)) if vals else None
        out.append(entry)
    return out


def run_fewshot_benchmark(data: Path, out: Path, shots: Sequence[int] = (1, 2, 4, 8), generated: int = 64,
                          seeds: Sequence[int] = (0, 1, 2), profile: str | Profile = "cpu",
                          category: str | None = None,
                          data_format: str | None = None, augment: GoodAugmentConfig | None = None,
                          diffusion: DiffusionGoodConfig | None = None, generator: GoodsConfig | None = None,
                          progress: bool = True) -> dict:
    """Few-shot PatchCore with / without `generated` generated good images; see module doc.

    Returns the document also written to `<out>/fewshot.json` (config, one row per model, and a
    summary over seeds)."""

    prof = get_profile(profile)
    shots = _positive_ints("shots", shots)
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
    for k in shots:
        shot_indices(len(split.train_good), k, 0)  # fail early when K exceeds the good images
    weights = backbone_weights(prof)
    config = {"shots": list(shots), "generated": int(generated), "seeds": list(seeds), "size": prof.size,
              "augment": None if diffusion or generator else aug.to_dict(),
              "diffusion": diffusion.to_dict() if diffusion else None,
              "patchcore": {"levels": list(prof.pc_levels), "coreset": 1.0, "max_bank": prof.pc_max_bank,
                            "sigma": prof.pc_sigma, "projection": prof.pc_projection}}
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
        refuse_other_job(out, old, doc, ("category", "config"), what="few-shot study")
        doc["rows"] = old.get("rows", {})
    todo = [(s, k, g) for s in seeds for k in shots for g in variants if f"s{s}-k{k}-g{g}" not in doc["rows"]]
    ldm = None
    if diffusion is not None and any(g for _, _, g in todo):  # load once, and fail before any output

        ldm = load_ldm(diffusion.base_model, diffusion.device, diffusion.precision)
    make_goods = None
    if generator is not None and any(g for _, _, g in todo):  # models load once, before any output
        make_goods = goods_generator(generator, ds.category)
    out.mkdir(parents=True, exist_ok=True)

    test: list[TestSet] = []
    for s, k, g in tqdm(todo, desc="few-shot patchcore", disable=not progress):
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
        pc = PatchCore(prof.pc_levels, 1.0, prof.pc_projection, prof.pc_sigma, s, prof.device,
                       weights=weights, max_bank=prof.pc_max_bank, candidates=prof.pc_candidates)
        pc.fit(train, progress=False)
        assert pc.bank is not None  # set by fit()
        if not test:
            test.append(TestSet.load(split, prof.size, progress))
        maps = pc.predict(test[0].images, progress=False)
        scores = maps.reshape(len(maps), -1).max(1).astype(np.float64)
        loc = localization_metrics(test[0], maps, scores, progress=False)
        doc["rows"][f"s{s}-k{k}-g{g}"] = {"seed": s, "shots": k, "generated": g, "localization": loc,
                                          "goods": [str(x.image) for x in chosen], "bank": int(len(pc.bank)),
                                          "time_s": round(time.perf_counter() - t0, 2)}
        doc["summary"] = summarise(doc["rows"])
        write_json_atomic(path, doc)
    doc["summary"] = summarise(doc["rows"])

    write_fewshot_report(out)  # fewshot.html + fewshot.png
    return doc


def format_fewshot_table(doc: dict) -> str:
    """Plain-text table: shots x generated goods -> mean (std) over seeds, in %."""
    def cell(e: dict, key: str) -> str:
        m, s = e.get(key), e.get(f"{key}_std")
        return f"{'-':>13}" if m is None or s is None else f"{100 * m:7.1f} ({100 * s:3.1f})"  # both or neither

    head = f"{'shots':>5}{'generated':>10}{'seeds':>6}" + "".join(
        f"{h:>13}" for h in ("image AUROC", "pixel AUROC", "pixel AP", "AUPRO"))
    lines = [f"{doc.get('category')} | few-shot PatchCore | profile {doc.get('profile')}", head]
    for e in doc.get("summary", []):
        lines.append(f"{e['shots']:>5}{e['generated']:>10}{e['seeds']:>6}" + "".join(
            cell(e, f"{lv}_{m}") for lv, m in SUMMARY_KEYS))
    return "\n".join(lines)
