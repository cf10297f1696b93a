"""The honest downstream benchmark: does generated data improve an inspection model?

Protocol (AnomalyDiffusion / GAA / DualAnoDiff, without their leaks): for each synthesis method,
generate pairs from the few-shot third of the real defects, train the profile's localisation
model (generated pairs + good training images) and defect-type classifier for a fixed schedule,
then read the test split (the other two thirds + test good) once and score the final models.
`patchcore` / `none` is the no-synthesis baseline (PatchCore from the good images; its classifier
learns from the real few-shot defects alone). Results go to `<out>/results.json`, rewritten
atomically after each method, so an interrupted benchmark resumes by skipping finished methods.
"""

from __future__ import annotations

import resource
import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from anomalyforge import __version__
from anomalyforge.atomic import check_output_dir, first_missing, remove_created, write_with
from anomalyforge.data import few_shot_split, fit_data, load_dataset, train_masks
from anomalyforge.data.scan import verify_samples
from anomalyforge.data.types import FewShotSplit
from anomalyforge.errors import ConfigError, DataError
from anomalyforge.formats.manifest import read_pairs
from anomalyforge.formats.results import IDENTITY_KEYS, RESULTS_JSON, BenchmarkResults, write_results
from anomalyforge.formats.run import RUN_JSON, RunInfo, check_complete, check_training
from anomalyforge.formats.schema import refuse_other_job
from anomalyforge.inspect.banks import BankCache, fit_patchcore
from anomalyforge.inspect.classify import train_classifier
from anomalyforge.inspect.evaluate import TestSet, classification_metrics, decision_metrics, localization_metrics
from anomalyforge.inspect.pairs import GeneratedPairs
from anomalyforge.inspect.profiles import (
    Profile,
    backbone_identity,
    backbone_weights,
    get_profile,
    with_chosen_size,
)
from anomalyforge.inspect.train import good_images, holdout_goods
from anomalyforge.metrics import image_scores_from_maps
from anomalyforge.pipelines.select import AUTO, Selection, select_settings
from anomalyforge.pipelines.thresholds import DEFAULT_FPR
from anomalyforge.pipelines.train import save_model, score_pool, train_delivered
from anomalyforge.quality.generation import QualityConfig, score_run
from anomalyforge.report.figures import good_scale
from anomalyforge.report.html import write_report
from anomalyforge.synth.base import available
from anomalyforge.synth.run import generate_run

BASELINES = ("patchcore", "none")
RESULTS = RESULTS_JSON


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _save_maps(path: Path, **arrays: np.ndarray) -> None:
    write_with(path, lambda fh: np.savez_compressed(fh, **arrays))  # type: ignore[arg-type]  # never allow_pickle


def check_methods(methods: list[str]) -> list[str]:
    """Methods in order without duplicates; unknown names -> ConfigError listing the known ones."""

    if not methods:
        raise ConfigError("no methods given; use generator names and/or patchcore")
    known = available()
    out: list[str] = []
    for m in methods:
        m = m.strip()
        if m not in known and m not in BASELINES:
            raise ConfigError(f"unknown method {m!r}; available: {', '.join(known + list(BASELINES))}")
        if m not in out:
            out.append(m)
    return out


def _open_results(out: Path, header: dict) -> dict:
    """Existing results for the same category/profile/seed/settings (resume), or a fresh document."""
    path = out / RESULTS
    if path.is_file():
        old = BenchmarkResults.read(path).to_dict()
        refuse_other_job(out, old, header, IDENTITY_KEYS, what="benchmark")
        return old
    return {**header, "methods": {}}


def _check_given_runs(runs: dict[str, Path], split, data: Path) -> None:
    """Every `--run` folder must be a generation run made from exactly the training part of this
    benchmark's split (same files, same bytes): otherwise its pairs may have been made from real
    defects that are now test images. DataError naming the first differing file."""
    for label, run in runs.items():
        if not run.is_dir():
            raise DataError(run, "generated run folder not found")
        if not (run / RUN_JSON).is_file():
            raise DataError(run, f"--run {label}=...: not a generated run folder (no run.json)")
        info = RunInfo.read(run)
        check_training(run, info, split, root=data)
        check_complete(run, info, len(read_pairs(run, include_rejected=True)))


def _relative(path: Path, out: Path) -> str:
    try:
        return str(path.resolve().relative_to(out.resolve()))
    except ValueError:
        return str(path.resolve())


def run_benchmark(data: Path, out: Path, methods: list[str], category: str | None = None,
                  profile: str | Profile = "cpu", seed: int = 0, n: int | None = None, data_format: str | None = None,
                  runs: dict[str, Path] | None = None, progress: bool = True, fpr: float = DEFAULT_FPR,
                  save_models: bool = False) -> dict:
    """Benchmark synthesis methods (and the PatchCore baseline) on one category; see module doc.

    Each synthetic method's model is trained by `pipelines.train.train_delivered` (what `train`
    delivers) and also scored at its thresholds chosen on training data at `fpr` (entry
    `decisions`); `save_models` writes it as a model folder `<out>/models/<method>/` for `predict`.

    Returns the results document also written to `<out>/results.json`. Every option and input file is
    checked before anything is written; a benchmark that fails before finishing any method removes
    the folders it created (never a folder that existed before; an interrupt keeps them to resume).
    """
    created = first_missing(out)
    try:
        return _benchmark(data, out, methods, category, profile, seed, n, data_format, runs, progress, fpr,
                          save_models)
    except Exception:
        if not (Path(out) / RESULTS).is_file():
            remove_created(created)
        raise


def _benchmark(data: Path, out: Path, methods: list[str], category: str | None, profile: str | Profile,
               seed: int, n: int | None, data_format: str | None, runs: dict[str, Path] | None,
               progress: bool, fpr: float = DEFAULT_FPR, save_models: bool = False) -> dict:

    prof = get_profile(profile)
    runs = {k: Path(v) for k, v in (runs or {}).items()}
    for k, v in runs.items():
        if k in BASELINES:
            raise ConfigError(f"--run {k}=...: {k!r} is a baseline, it uses no generated run")
        if k not in methods and not (v / RUN_JSON).is_file():
            raise DataError(v, f"--run {k}=...: not a generated run folder (no run.json)")
    # a --run label that is not a method name (e.g. croppaste+ars) benchmarks that existing run as is
    labels = list(dict.fromkeys([m.strip() for m in methods if m.strip()] + list(runs)))
    if not labels:
        raise ConfigError("no methods given; use generator names and/or patchcore")
    if AUTO in labels and prof.name != "auto":
        raise ConfigError("method 'auto' (the generator chosen on training folds) needs --profile auto")
    generated_here = [m for m in labels if m not in runs and m != AUTO]
    if generated_here:
        check_methods(generated_here)
    methods = labels
    if n is not None and (not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n <= 0):
        raise ConfigError(f"n must be a positive number of pairs per defect type, got {n}")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed}")
    if not 0.0 <= fpr < 1.0:
        raise ConfigError(f"--fpr must be in [0, 1), got {fpr}")
    n = int(n) if n is not None else prof.n_per_type
    data, out = Path(data), Path(out)
    check_output_dir(out, [data])  # never inside the dataset, never below a file

    ds = load_dataset(data, category=category, data_format=data_format)
    split = few_shot_split(ds, progress=progress)
    split.check_disjoint()
    _check_given_runs(runs, split, data)
    prof, size_choice = with_chosen_size(prof, train_masks(split))
    header = {
        "category": ds.category, "data": str(data.resolve()), "profile": prof.name, "seed": int(seed),
        "config": prof.to_dict(), "backbone": backbone_identity(prof),
        "split": {"train_defects": {t: len(v) for t, v in sorted(split.train_defects.items())},
                  "test_defects": {t: len(v) for t, v in sorted(split.test_defects.items())},
                  "train_good": len(split.train_good), "test_good": len(split.test_good)},
        "created": datetime.now(UTC).isoformat(timespec="seconds"), "version": __version__,
    }
    if size_choice is not None:
        header["size_choice"] = size_choice.to_dict()
    results = _open_results(out, header)
    fit = fit_data(split, size=prof.size)
    fit.verify()  # every training and test file decodes, before anything is written
    selection = _selection(results, fit, prof, seed, [m for m in methods if m not in BASELINES], progress)
    verify_samples([*(x for v in split.test_defects.values() for x in v), *split.test_good], what="test files")
    out.mkdir(parents=True, exist_ok=True)
    needed = [t for t in sorted(split.train_defects) if split.test_defects.get(t)]
    test: list[TestSet] = []  # read once, after the first model is trained

    def test_set() -> TestSet:
        if not test:
            test.append(TestSet.load(split, prof.size, progress))
        return test[0]

    # Heat-map scale: a seeded share of the good TRAINING images that no model trains on (the draw
    # FusedLocalizer holds out to standardise its maps; the other models train on `train_fit`).
    train_fit, scale_fit = holdout_goods(fit, prof.fusion_holdout, seed)
    scale_goods: list[np.ndarray] = []

    def scale_images() -> np.ndarray:
        if not scale_goods:
            scale_goods.append(good_images(scale_fit, prof.size, progress))
        return scale_goods[0]

    # the baseline's PatchCore and a fused localiser's are one model (same settings, seed, goods):
    # fitted once for both (`inspect.banks`)
    banks = BankCache()
    todo = [m for m in methods if results["methods"].get(m, {}).get("status") != "done"]
    for method in tqdm(todo, desc="benchmark", disable=not progress):
        t0 = time.perf_counter()
        if method in BASELINES:
            entry = _run_patchcore(train_fit, prof, seed, test_set, out, method, progress, scale_images, banks)
        else:
            mprof = selection.profile_for(prof, method) if selection else prof
            keep = _Keep(split, data, fpr, save_models)
            entry = _run_synthetic(data, out, method, ds.category, data_format, fit, mprof, seed, n,
                                   runs.get(method), needed, test_set, progress, keep,
                                   generator=selection.generator_for(method) if selection else method,
                                   banks=banks)
            if selection:
                entry["selected"] = {"generator": selection.generator_for(method), "fusion": mprof.fusion,
                                     "cls_real_share": mprof.cls_real_share}
        entry["timings"]["total_s"] = round(time.perf_counter() - t0, 2)
        entry["peak_rss_mb"] = round(_peak_rss_mb(), 1)
        results["methods"][method] = entry
        results = write_results(out / RESULTS, results)

    write_report(out)
    return results


def _selection(results: dict, fit, prof: Profile, seed: int, methods: list[str], progress: bool
               ) -> Selection | None:
    """`--profile auto`: the training-fold choice (`pipelines.select`), made before the test split is
    opened and recorded under `selection`; a resumed benchmark reuses its record."""
    if prof.name != "auto":
        return None
    if results.get("selection"):
        return Selection.from_record(results["selection"])
    selection = select_settings(fit, prof, seed, methods, progress)
    results["selection"] = selection.record
    return selection


def _display_scale(predict, goods: np.ndarray, progress: bool) -> dict | None:
    """The heat-map scale of one model: its pixel scores on goods it never trained on (see good_scale)."""
    if not len(goods):
        return None
    return {**good_scale(predict(goods, progress)), "n_images": int(len(goods)),
            "from": "held-out good training images (no model trained on them)"}


def _run_patchcore(fit, prof: Profile, seed: int, test_set, out: Path, method: str, progress: bool,
                   scale_images, banks: BankCache | None = None) -> dict:

    t0 = time.perf_counter()
    weights = backbone_weights(prof)
    pc = fit_patchcore(fit, lambda: good_images(fit, prof.size, progress), prof, seed, weights, progress, banks)
    # the classifier without synthesis: trained on the real few-shot defects alone
    real = GeneratedPairs.from_fit_data(fit) if sum(bool(v) for v in fit.defects.values()) > 1 else None
    cls_model = (train_classifier(real, prof, seed=seed, progress=progress, weights=weights)
                 if real is not None else None)
    t1 = time.perf_counter()
    scale = _display_scale(pc.predict, scale_images(), progress)
    test = test_set()
    maps = pc.predict(test.images, progress)
    scores = maps.reshape(len(maps), -1).max(1).astype(np.float64)  # PatchCore: max of the map
    loc = localization_metrics(test, maps, scores, progress)
    cls, extra = _classify(cls_model, test, "real few-shot defects")
    rel = f"methods/{method}/maps.npz"
    _save_maps(out / rel, maps=maps.astype(np.float16), masks=test.masks, labels=test.labels,
               types=test.types, paths=test.paths, image_scores=scores, **extra)
    return {"status": "done", "kind": "baseline", "model": "patchcore", "localization": loc,
            "classification": cls, "generation": None,
            "timings": {"generate_s": 0.0, "quality_s": 0.0, "train_s": round(t1 - t0, 2),
                        "eval_s": round(time.perf_counter() - t1, 2)},
            "n_pairs": 0, "run": None, "artifacts": {"maps": rel}, "display_scale": scale}


@dataclass
class _Keep:
    """What a synthetic method's delivered model needs beyond the training: the split (recorded in a
    saved model), the data root, the thresholds' false-alarm rate, and whether to save it."""

    split: FewShotSplit
    data: Path
    fpr: float
    save: bool


def _run_synthetic(data: Path, out: Path, method: str, category: str, data_format: str | None, fit,
                   prof: Profile, seed: int, n: int, run: Path | None, needed: list[str], test_set,
                   progress: bool, keep: _Keep, generator: str | None = None,
                   banks: BankCache | None = None) -> dict:

    t0 = time.perf_counter()
    if run is None:

        run = out / "runs" / method
        generate_run(data, run, method=generator or method, n=n, category=category, types=None, seed=seed,
                     size=prof.size, params=None, data_format=data_format, progress=progress)
    elif not run.is_dir():
        raise DataError(run, "generated run folder not found")
    pairs = GeneratedPairs.from_run(run, prof.size, category=category, progress=progress)
    pairs.check_covers(needed, run)
    tq = time.perf_counter()
    quality_rel = f"methods/{method}/quality.json"
    generation = _generation_quality(run, out / quality_rel, prof, seed, progress) if prof.quality else None
    t1 = time.perf_counter()
    # the delivered model's training (`anomalyforge train`): a fused localiser holds the scale goods
    # out itself (same draw), any other trains without them; thresholds and scale on training data
    done = train_delivered(fit, pairs, prof, seed, keep.fpr, progress, banks)
    trained = done.model
    loc_model, cls_model, trained_on = trained.localizer, trained.classifier, trained.trained_on
    t2 = time.perf_counter()
    scale = done.display_scale
    saved = None
    if keep.save:
        saved = f"models/{method}"
        if (out / saved).exists():
            shutil.rmtree(out / saved)  # a rerun of an unfinished method: the new model replaces it
        (out / saved).mkdir(parents=True)
        save_model(out / saved, trained, prof, category=category, method=method, seed=seed, n=n, split=keep.split,
                   data=keep.data, run=str(run.resolve()), holdout=done.held, thresholds=done.thresholds,
                   display_scale=scale)

    test = test_set()
    maps = loc_model.predict(test.images, progress)
    scores = image_scores_from_maps(maps, score_pool(prof))
    loc = localization_metrics(test, maps, scores, progress)
    th = done.thresholds
    decisions = {**decision_metrics(test, maps, scores, th.image, th.pixel), "fpr": th.fpr,
                 "pixel_from": th.pixel_from, "rule": th.rule}
    cls, extra = _classify(cls_model, test, trained_on, maps)
    if cls is not None:
        decisions["type_accuracy"] = cls["accuracy"]
        if trained.cls_choice is not None:
            cls["input"] = trained.cls_input
            cls["choice"] = trained.cls_choice
            # what the candidates not chosen would have scored: read after the choice, never used by it
            cls["candidates_test"] = {name: cls["accuracy"] if c is cls_model else
                                      (_classify(c, test, "", maps)[0] or {}).get("accuracy")
                                      for name, c in trained.cls_candidates.items()}
    rel = f"methods/{method}/maps.npz"
    _save_maps(out / rel, maps=maps.astype(np.float16), masks=test.masks, labels=test.labels,
               types=test.types, paths=test.paths, image_scores=scores, **extra)
    model = prof.localizer + ("+patchcore" if prof.fusion else "")  # fused maps (profile `fusion`)
    return {"status": "done", "kind": "synthetic", "model": model, "localization": loc,
            "classification": cls, "generation": generation,
            "timings": {"generate_s": round(tq - t0, 2), "quality_s": round(t1 - tq, 2), "train_s": round(t2 - t1, 2),
                        "train_parts_s": trained.timings, "eval_s": round(time.perf_counter() - t2, 2)},
            "n_pairs": len(pairs), "run": _relative(run, out), "display_scale": scale, "decisions": decisions,
            "artifacts": {"maps": rel, **({"quality": quality_rel} if generation is not None else {}),
                          **({"model": saved} if saved else {})}}


def _classify(cls_model, test: TestSet, trained_on: str,
              maps: np.ndarray | None = None) -> tuple[dict | None, dict[str, np.ndarray]]:
    """Classification metrics of `cls_model` on the test defects of its types (None without a model
    or such defects), and the per-image predictions to save beside the maps; a region classifier
    reads the localiser's `maps` of the test images."""
    if cls_model is None:
        return None, {}
    sel = (test.labels == 1) & np.isin(test.types, cls_model.labels)
    true = test.types[sel].tolist()
    if not true:
        return None, {}
    pred = cls_model.predict(test.images[sel], maps[sel] if maps is not None and cls_model.needs_maps else None)
    cls = {**classification_metrics(pred, true, cls_model.labels), "trained_on": trained_on}
    return cls, {"cls_pred": np.array(pred), "cls_true": np.array(true)}


def _generation_quality(run: Path, out: Path, prof: Profile, seed: int, progress: bool) -> dict:
    """IS and IC-LPIPS of the run's kept pairs (default offline models; the full document is
    written to `out`, under the benchmark's own folder, never into a run it was given),
    summarised for results.json."""

    out.parent.mkdir(parents=True, exist_ok=True)
    doc = score_run(run, QualityConfig(size=prof.size, seed=seed, device=prof.device), progress, out=out)
    keep = ("n", "is", "is_std", "ic_lpips")
    return {**{k: doc["all"].get(k) for k in keep}, "config": doc["config"],
            "types": {t: {k: e.get(k) for k in keep} for t, e in doc["types"].items()},
            "references_is": doc["references"].get("is")}


def format_results_table(results: dict) -> str:
    """Plain-text table: method x pixel AUROC/AP/F1/AUPRO, image AUROC, accuracy, minutes (in %)."""
    def pct(v) -> str:
        return "   -" if v is None else f"{100 * v:5.1f}"

    def num(v) -> str:
        return "    -" if v is None else f"{v:5.2f}"

    head = (f"{'method':<14}{'model':<14}{'pxAUROC':>8}{'pxAP':>7}{'pxF1':>7}{'AUPRO':>7}{'imAUROC':>8}{'acc':>7}"
            f"{'IS':>7}{'IC-L':>7}{'min':>7}")
    lines = [f"{results.get('category')} | profile {results.get('profile')} | seed {results.get('seed')}", head]
    for m, e in results.get("methods", {}).items():
        px, im = e["localization"]["pixel"], e["localization"]["image"]
        acc = (e.get("classification") or {}).get("accuracy")
        gen = e.get("generation") or {}
        lines.append(f"{m:<14}{e['model']:<14}{pct(px['auroc']):>8}{pct(px['ap']):>7}{pct(px['f1_max']):>7}"
                     f"{pct(px['aupro']):>7}{pct(im['auroc']):>8}{pct(acc):>7}"
                     f"{num(gen.get('is')):>7}{num(gen.get('ic_lpips')):>7}"
                     f"{e['timings']['total_s'] / 60:7.1f}")
    return "\n".join(lines)
