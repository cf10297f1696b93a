"""Command-line interface: a thin layer over documented Python functions.

Every sub-command parses its options and calls one library function; any `AnomalyForgeError`
or `OSError` (a read-only folder, a path below a file) becomes a one-line message on stderr,
``anomalyforge: error: PATH: problem``, and exit status 2; data warnings print as one line each,
``warning: FILE: problem``; a folder the failed command created and left empty is removed again.
Each command owns one `_add_*` / `_run_*` pair below, so concerns stay separate.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from anomalyforge import __version__
from anomalyforge.atomic import TEMP_NAME, first_missing, remove_created
from anomalyforge.data import DataWarning
from anomalyforge.data.info import dataset_info, format_info_table
from anomalyforge.diffusion.autoencoder import LATENT_SAMPLES, AutoencoderFit
from anomalyforge.diffusion.tiny import make_tiny_model
from anomalyforge.errors import AnomalyForgeError, ConfigError
from anomalyforge.formats.manifest import MANIFEST
from anomalyforge.inspect.anomalib_detectors import DETECTORS, DetectorConfig
from anomalyforge.inspect.profiles import get_profile
from anomalyforge.pipelines.benchmark import BASELINES, format_results_table, run_benchmark
from anomalyforge.pipelines.distributed import BACKENDS, RayOptions, generate_on_ray
from anomalyforge.pipelines.fewshot import FULL, OWN_PATCHCORE, format_fewshot_table, run_fewshot_benchmark
from anomalyforge.pipelines.predict import export_model, predict
from anomalyforge.pipelines.pretrain import TAB_METHODS, pretrain_backbone
from anomalyforge.pipelines.seeds import format_seeds_table, run_benchmark_seeds
from anomalyforge.pipelines.train import DEFAULT_FPR, train_model
from anomalyforge.quality.ars import ARSConfig
from anomalyforge.quality.cluster import ClusterConfig, cluster_category, format_clusters
from anomalyforge.quality.filter import filter_run, format_summary
from anomalyforge.quality.generation import QualityConfig, format_quality_comparison, format_quality_table, score_run
from anomalyforge.report.html import write_report
from anomalyforge.report.preview import contact_sheet
from anomalyforge.synth.base import available
from anomalyforge.synth.export import export_run
from anomalyforge.synth.good import (
    TORCHVISION_ARMS,
    VAE_ARMS,
    DiffusionGoodConfig,
    GoodAugmentConfig,
    GoodsConfig,
    TorchvisionGoodConfig,
    VaeGoodConfig,
)
from anomalyforge.synth.merge import merge_runs
from anomalyforge.synth.run import generate_run

log = logging.getLogger("anomalyforge.cli")


class _DeprecatedAlias(argparse.Action):
    """Stores the value; when given under its old spelling, says once on stderr what replaces it."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        if option_string in ("--format",):
            print(f"warning: {option_string} for the input layout is deprecated; use --layout", file=sys.stderr)
        setattr(namespace, self.dest, values)


def _layout_arg(p: argparse.ArgumentParser) -> None:
    """--layout (input dataset layout); --format is its deprecated old spelling (--format now means
    an output format, as in `export`)."""
    p.add_argument("--layout", "--format", dest="data_format", default=None, action=_DeprecatedAlias,
                   metavar="LAYOUT",
                   help="force the input layout (mvtec, mvtec_loco, mvtec3d, visa, btad, magnetic_tile, folder); "
                        "--format is the deprecated old spelling")


def _data_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    """Options every data-reading command shares: --data PATH, --category, --layout."""
    p.add_argument("--data", type=Path, required=required,
                   help="dataset root or one category's folder")
    p.add_argument("--category", default=None, help="category to use when --data holds several")
    _layout_arg(p)


def _parse_params(items: Sequence[str] | None, flag: str = "--param") -> dict:
    """key=value pairs; values parsed as JSON when possible (numbers, lists, booleans, null)."""
    out: dict = {}
    for item in items or []:
        if "=" not in item:
            raise AnomalyForgeError(f"{flag} {item!r}: expected key=value")
        k, v = item.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


# ---- info (foundation) -------------------------------------------------------------------------
def _add_info(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="counts per split and defect type, few-shot split sizes, data warnings")
    p.add_argument("path", type=Path, nargs="?", default=None,
                   help="dataset root or one category's folder (or --data PATH, as in the other commands)")
    p.add_argument("--data", type=Path, default=None, dest="data", help="the same as PATH")
    p.add_argument("--category", default=None, help="category to use when PATH holds several")
    _layout_arg(p)
    p.add_argument("--ratio", type=float, default=1 / 3, help="few-shot training fraction per defect type")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--holdout", type=float, default=0.2,
                   help="fraction of good images held out for testing when the layout has no test split")
    p.add_argument("--seed", type=int, default=0, help="seed of the held-out good images")
    p.add_argument("--mask-threshold", type=int, default=128, help="grey level at which masks are binarised")
    p.add_argument("--no-verify", dest="verify", action="store_false",
                   help="skip decoding every image and mask (faster; header checks only)")
    _add_progress(p)
    p.set_defaults(func=_run_info)


def _run_info(args: argparse.Namespace) -> int:

    if (args.path is None) == (args.data is None):
        raise AnomalyForgeError("info: give the dataset once, as PATH or as --data PATH")
    infos = dataset_info(args.path or args.data, category=args.category, data_format=args.data_format,
                         ratio=args.ratio,
                         verify=args.verify, progress=args.progress, holdout=args.holdout, seed=args.seed,
                         mask_threshold=args.mask_threshold)
    if args.json:
        print(json.dumps(infos if len(infos) > 1 else infos[0], indent=2))
    else:
        print(format_info_table(infos))
    for info in infos:
        for w in info.get("warnings", []):
            print(f"warning: {info['category']}: {w}", file=sys.stderr)
    return 0


# ---- report (HTML benchmark report) ------------------------------------------------------------
def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="(re)write the self-contained HTML report of a finished benchmark")
    p.add_argument("bench_dir", type=Path, help="benchmark folder holding results.json")
    p.add_argument("--out", type=Path, default=None, help="report file (default BENCH_DIR/report.html)")
    _add_progress(p)
    p.set_defaults(func=_run_report)


def _run_report(args: argparse.Namespace) -> int:

    out = write_report(args.bench_dir, args.out, progress=args.progress)
    print(out)
    return 0


# ---- generate / preview / export (synthesis runs) ---------------------------------------------
def _add_generate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="fit a synthesis method on the few-shot split and write defect pairs")
    _data_args(p)
    p.add_argument("--method", default="croppaste", help=f"synthesis method: {', '.join(available())}")
    p.add_argument("--n", type=int, default=100, help="pairs per defect type")
    p.add_argument("--out", type=Path, required=True, help="run folder (resumed/extended when it holds the same run)")
    p.add_argument("--types", default=None, help="comma-separated defect types (default: all with masks)")
    p.add_argument("--seed", type=int, default=0, help="run seed; every pair's seed derives from it")
    p.add_argument("--size", type=int, default=256, help="side of the generated square images")
    p.add_argument("--param", action="append", default=None, metavar="KEY=VALUE", help="method parameter")
    p.add_argument("--base-model", default=None, help="diffusion methods: base model folder")
    p.add_argument("--fit-steps", type=int, default=None, help="diffusion methods: training steps")
    p.add_argument("--sampler-steps", type=int, default=None, help="diffusion methods: sampling steps")
    p.add_argument("--device", default=None, help="diffusion methods: torch device")
    p.add_argument("--subtypes", default=None,
                   help="'auto' clusters each defect type into sub-types fitted separately (GAA), "
                        "or a clusters.json written by `anomalyforge cluster`")
    p.add_argument("--keep-ratio", type=float, default=None,
                   help="ARS quality filter: generate n / R pairs per type and keep the best n "
                        "(default: the method's, 0.5 for gaa, none otherwise; 0 = no filtering)")
    p.add_argument("--shard", default=None, metavar="I/N",
                   help="draw only shard I of N (0 <= I < N; same pair ids and seeds); shards may write into one "
                        "shared --out or into separate ones joined by `anomalyforge merge`")
    p.add_argument("--shards", type=int, default=None,
                   help="--backend ray: number of shard tasks (default: as many as the cluster runs at once)")
    _add_backend(p)
    _add_progress(p)
    p.set_defaults(func=_run_generate)


def _add_backend(p: argparse.ArgumentParser) -> None:
    """--backend local|ray and where / how big the Ray tasks are."""
    p.add_argument("--backend", choices=BACKENDS, default="local",
                   help="local: this process; ray: Ray tasks on this machine or a cluster")
    p.add_argument("--address", default=None,
                   help="--backend ray: address of a running cluster (`ray start --head` prints it; default: "
                        "start Ray on this machine)")
    p.add_argument("--cpus-per-task", type=float, default=1.0, help="--backend ray: CPUs each task reserves")
    p.add_argument("--gpus-per-task", type=float, default=0.0, help="--backend ray: GPUs each task reserves")


def _ray_options(args: argparse.Namespace) -> RayOptions | None:
    """The RayOptions of --backend ray (None for local); Ray options without it are an error."""
    if args.backend != "ray":
        given = [flag for flag, on in (("--address", args.address is not None),
                                       ("--shards", getattr(args, "shards", None) is not None),
                                       ("--cpus-per-task", args.cpus_per_task != 1.0),
                                       ("--gpus-per-task", args.gpus_per_task != 0.0)) if on]
        if given:
            raise AnomalyForgeError(f"{given[0]} needs --backend ray")
        return None
    return RayOptions(address=args.address, cpus_per_task=args.cpus_per_task, gpus_per_task=args.gpus_per_task)


def _run_generate(args: argparse.Namespace) -> int:

    params = _parse_params(args.param)
    for key in ("base_model", "fit_steps", "sampler_steps", "device"):
        if getattr(args, key) is not None:
            params[key] = getattr(args, key)
    types = None
    if args.types is not None:
        types = [t.strip() for t in args.types.split(",") if t.strip()]
        if not types:
            raise AnomalyForgeError(f"--types {args.types!r}: no defect type named; leave --types out to use all")
    ray = _ray_options(args)
    kwargs = dict(method=args.method, n=args.n, category=args.category, types=types, seed=args.seed, size=args.size,
                  params=params, data_format=args.data_format, subtypes=args.subtypes, keep_ratio=args.keep_ratio)
    if ray is not None:
        if args.shard is not None:
            raise AnomalyForgeError("--shard with --backend ray: the ray backend makes the shards (see --shards)")
        s = generate_on_ray(args.data, args.out, ray, shards=args.shards, progress=args.progress, **kwargs)
    else:
        s = generate_run(args.data, args.out, progress=args.progress, shard=args.shard, **kwargs)
    print(f"{'defect type':<24} {'pairs':>7} {'kept':>7}")
    for t, k in s["pairs"].items():
        print(f"{t:<24} {k:>7} {s['kept'].get(t, k):>7}")
    why = ", ".join(f"{k} {v}" for k, v in sorted(s.get("rejected_drafts", {}).items()))
    print(f"{s['category']}/{s['method']}: {s['new']} new pairs in {s['seconds']:.1f} s "
          f"({s['pairs_per_s']:.1f} pairs/s, {s['redraws']} redraws{': ' + why if why else ''}) -> {s['run']}")
    return 0


def _add_merge(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("merge", help="join the run folders of `generate --shard I/N` into one run")
    p.add_argument("runs", type=Path, nargs="+", help="run folders written by the shards of one generate command")
    p.add_argument("--out", type=Path, required=True, help="the merged run folder (may be one of RUNS)")
    _add_progress(p)
    p.set_defaults(func=_run_merge)


def _run_merge(args: argparse.Namespace) -> int:
    s = merge_runs(args.runs, args.out, progress=args.progress)
    state = "complete" if s["complete"] else f"incomplete: run the missing shards into {s['run']}"
    print(f"{s['run']}: {s['total']} of {s['expected']} pairs from {s['parts']} run(s) ({state})")
    return 0


def _add_preview(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("preview", help="PNG contact sheet of a generation run")
    p.add_argument("run", type=Path, help="run folder written by generate")
    p.add_argument("--out", type=Path, default=None, help="PNG to write (default RUN/preview.png)")
    p.add_argument("--per-type", type=int, default=8, help="pairs shown per defect type")
    p.add_argument("--require-complete", action="store_true",
                   help="refuse a run whose generation did not finish (default: warn and go on)")
    p.set_defaults(func=_run_preview)


def _run_preview(args: argparse.Namespace) -> int:

    print(contact_sheet(args.run, out=args.out, per_type=args.per_type, require_complete=args.require_complete))
    return 0


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a run in a layout other tools read (MVTec AD)")
    p.add_argument("run", type=Path, help="run folder written by generate")
    p.add_argument("out", type=Path, help="dataset root to write (OUT/<category>/...)")
    p.add_argument("--format", default="mvtec", help="output layout (mvtec)")
    p.add_argument("--test-good", type=float, default=0.1,
                   help="share of the good images written to test/good instead of train/good")
    p.add_argument("--train-share", type=float, default=0.5,
                   help="share of the other good images written to train/good; none of them is the background "
                        "of an exported defect (their pairs are left out)")
    p.add_argument("--shared-backgrounds", action="store_true",
                   help="old, leaky split: every good in train/good and every pair, although the defects' "
                        "backgrounds are then in train/good")
    p.add_argument("--require-complete", action="store_true",
                   help="refuse a run whose generation did not finish (default: warn and go on)")
    p.set_defaults(func=_run_export)


def _run_export(args: argparse.Namespace) -> int:

    print(export_run(args.run, args.out, format=args.format, test_good=args.test_good,
                     require_complete=args.require_complete, train_share=args.train_share,
                     shared_backgrounds=args.shared_backgrounds))
    return 0


# ---- make-tiny-model (diffusion core) -----------------------------------------------------------
def _add_make_tiny_model(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("make-tiny-model",
                       help="write a tiny random-weight diffusion checkpoint (for tests / smoke runs)")
    p.add_argument("dir", type=Path, help="new (or empty) folder to write the checkpoint into")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    p.set_defaults(func=_run_make_tiny_model)


def _run_make_tiny_model(args: argparse.Namespace) -> int:

    out = make_tiny_model(args.dir, seed=args.seed)
    print(f"tiny diffusion model written to {out} (use --base-model {out})")
    return 0


# ---- cluster / filter (GAA quality: anomaly concepts, ARS filtering) ---------------------------
def _add_cluster(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cluster", help="cluster each defect type's few-shot defects into anomaly concepts")
    _data_args(p)
    p.add_argument("--out", type=Path, default=None, help="folder for clusters.json and a contact sheet per cluster")
    p.add_argument("--size", type=int, default=256, help="side the images are resized to")
    p.add_argument("--seed", type=int, default=0, help="seed of the clustering")
    p.add_argument("--ratio", type=float, default=1 / 3, help="few-shot training fraction per defect type")
    p.add_argument("--extractor", default="cnn", help="deep features: cnn (EfficientNet-Lite0) or vit")
    p.add_argument("--extractor-weights", default=None, help="weights file for --extractor vit")
    _add_progress(p)
    p.set_defaults(func=_run_cluster)


def _run_cluster(args: argparse.Namespace) -> int:

    cfg = ClusterConfig(size=args.size, extractor=args.extractor,
                        extractor_weights=args.extractor_weights or ("imagenet" if args.extractor == "cnn" else None))
    notes: list[str] = []
    clusters = cluster_category(args.data, category=args.category, data_format=args.data_format, size=args.size,
                                seed=args.seed, out=args.out, config=cfg, ratio=args.ratio,
                                progress=args.progress, notes=notes)
    print(format_clusters(clusters))
    for note in notes:
        log.info("note: %s", note)
    if args.out is not None:
        log.info("clusters.json and contact sheets -> %s", args.out)
    return 0


def _add_filter(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("filter", help="score a run's pairs by Anomaly Region Score and reject the worst")
    p.add_argument("run", type=Path, help="run folder written by generate")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--keep", type=int, default=None, help="pairs kept per defect type (highest ARS)")
    g.add_argument("--keep-ratio", type=float, default=None, help="fraction kept per defect type")
    p.add_argument("--data", type=Path, default=None, help="dataset whose good training images train the "
                                                           "discriminator (default: from the run's run.json)")
    p.add_argument("--seed", type=int, default=0, help="seed of the discriminator training")
    p.add_argument("--steps", type=int, default=None, help="discriminator training steps")
    p.add_argument("--stratify", choices=("source", "type"), default="source",
                   help="source (default): share each defect type's budget over the real defects its pairs "
                        "were made from, keeping every few-shot defect; type: rank a type's pairs together "
                        "(GAA as published)")
    _add_progress(p)
    p.set_defaults(func=_run_filter)


def _run_filter(args: argparse.Namespace) -> int:

    config = None
    if args.steps is not None:

        config = ARSConfig(steps=args.steps)
    summary = filter_run(args.run, keep=args.keep, keep_ratio=args.keep_ratio, seed=args.seed, data=args.data,
                         config=config, progress=args.progress, stratify=args.stratify)
    print(format_summary(summary))
    return 0


# ---- quality (generation quality: IS, IC-LPIPS) ------------------------------------------------
def _add_quality(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("quality", help="Inception Score and IC-LPIPS of a run's pairs, per defect type")
    p.add_argument("runs", type=Path, nargs="+", metavar="RUN",
                   help="run folder(s) written by generate; several are compared in one table")
    p.add_argument("--classifier", default="efficientnet-lite0",
                   help="IS classifier: efficientnet-lite0 (offline default), -lite1, -lite2 or inception_v3 (papers)")
    p.add_argument("--classifier-weights", default="imagenet",
                   help="imagenet (default), a weights file, or none (random: smoke runs)")
    p.add_argument("--lpips", default="efficientnet-lite0",
                   help="LPIPS net: efficientnet-lite0 (offline default) or the lpips package's vgg (papers), "
                        "alex, squeeze")
    p.add_argument("--lpips-weights", default="imagenet", help="imagenet (default) or none (random)")
    p.add_argument("--per-cluster", type=int, default=50, help="images per cluster for pairwise LPIPS")
    p.add_argument("--seed", type=int, default=0, help="seed of the LPIPS pair sampling")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: CUDA when available)")
    p.add_argument("--json", action="store_true", help="print the quality.json document")
    p.add_argument("--require-complete", action="store_true",
                   help="refuse a run whose generation did not finish (default: warn and go on)")
    _add_progress(p)
    p.set_defaults(func=_run_quality)


def _run_quality(args: argparse.Namespace) -> int:

    def weights(v: str) -> str | None:
        return None if v.lower() == "none" else v

    cfg = QualityConfig(classifier=args.classifier, classifier_weights=weights(args.classifier_weights),
                        lpips=args.lpips, lpips_weights=weights(args.lpips_weights),
                        per_cluster=args.per_cluster, seed=args.seed, device=args.device)
    for run in args.runs:  # check every folder before scoring any
        if not (run / MANIFEST).is_file():
            raise AnomalyForgeError(f"{run}: not a generation run (no {MANIFEST})")
    docs = [score_run(run, cfg, progress=args.progress, require_complete=args.require_complete)
            for run in args.runs]
    if args.json:
        print(json.dumps(docs[0] if len(docs) == 1 else docs, indent=2))
    elif len(docs) == 1:
        print(format_quality_table(docs[0]))
    else:
        print(format_quality_comparison(list(zip(map(str, args.runs), docs, strict=False))))
    return 0


# ---- benchmark (downstream inspection models) --------------------------------------------------
def _add_benchmark(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("benchmark", help="train inspection models on generated data, test on real defects")
    _data_args(p)
    p.add_argument("--methods", required=True,
                   help=f"comma-separated generator names and/or patchcore (the no-synthesis baseline): "
                        f"{', '.join(available() + list(BASELINES))}; also the labels of --run folders")
    p.add_argument("--profile", default="cpu",
                   help="smoke, cpu, paper or auto (cpu with the fusion weight, the classifier's real share and "
                        "the generator of method label auto chosen on training folds)")
    p.add_argument("--seed", type=int, default=0, help="seed of generation and training")
    p.add_argument("--seeds", default=None, metavar="S1,S2,...",
                   help="run once per seed (OUT/seed-S/) and summarise the spread (OUT/summary.html)")
    p.add_argument("--n", type=int, default=None, help="generated pairs per defect type (default: profile's)")
    p.add_argument("--out", type=Path, required=True, help="benchmark folder (results.json, runs/, methods/)")
    p.add_argument("--run", action="append", default=[], metavar="METHOD=RUNDIR",
                   help="reuse an existing generated run for METHOD, one of --methods (repeatable)")
    p.add_argument("--no-quality", action="store_true",
                   help="skip the generation-quality scores (IS, IC-LPIPS) of each method's pairs")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a profile setting, e.g. fusion=0 or cls_real_share=0 (saved in results.json)")
    _add_backend(p)
    p.add_argument("--fpr", type=float, default=DEFAULT_FPR,
                   help="false-alarm rate on held-out good training images that sets the thresholds the "
                        "verdicts are scored at (as `train`)")
    p.add_argument("--save-models", action="store_true",
                   help="also write each synthetic method's model as a model folder OUT/models/METHOD/ "
                        "(what `train` writes; run it with `predict`)")
    _add_progress(p)
    p.set_defaults(func=_run_benchmark)


def _run_benchmark(args: argparse.Namespace) -> int:

    overrides = _parse_params(args.set, "--set")
    if args.no_quality:
        overrides["quality"] = False
    profile = get_profile(args.profile, **overrides)
    runs = {}
    for item in args.run:
        if "=" not in item:
            raise AnomalyForgeError(f"--run {item!r}: expected method=RUNDIR")
        k, v = item.split("=", 1)
        runs[k.strip()] = Path(v)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for k, v in runs.items():
        if k not in methods:
            raise AnomalyForgeError(f"--run {k}={v}: {k!r} is not in --methods {args.methods!r}; "
                                    f"add it there to benchmark this run")
    if args.seeds is not None:

        if runs:
            raise AnomalyForgeError("--run with --seeds: a fixed generated run does not change with the seed")
        if args.seed != 0:
            raise AnomalyForgeError("give --seed or --seeds, not both")
        ray = _ray_options(args)
        if args.save_models:
            raise AnomalyForgeError("--save-models with --seeds: save the model of one seed (--seed)")
        summary = run_benchmark_seeds(args.data, args.out, methods, _int_list(args.seeds), category=args.category,
                                      profile=profile, n=args.n, data_format=args.data_format,
                                      progress=args.progress, backend=args.backend, ray=ray)
        print(format_seeds_table(summary))
        return 0
    if args.backend != "local":
        raise AnomalyForgeError("--backend ray runs one task per seed: give --seeds")
    _ray_options(args)
    results = run_benchmark(args.data, args.out, methods, category=args.category, profile=profile,
                            seed=args.seed, n=args.n, data_format=args.data_format, runs=runs,
                            progress=args.progress, fpr=args.fpr, save_models=args.save_models)
    print(format_results_table(results))
    for m, e in results["methods"].items():
        if (e.get("artifacts") or {}).get("model"):
            print(f"{m}: model folder {args.out / e['artifacts']['model']}")
    return 0


# ---- train / predict / export-model (a model on the line) ---------------------------------------
def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train the inspection model a benchmark scores, on the training split, "
                                     "and write it as a model folder")
    _data_args(p)
    p.add_argument("--method", required=True, help=f"synthesis method: {', '.join(available())}")
    p.add_argument("--run", type=Path, default=None,
                   help="use this generated run (made from the same split) instead of generating into OUT/run")
    p.add_argument("--profile", default="cpu", help="smoke, cpu or paper")
    p.add_argument("--seed", type=int, default=0, help="seed of generation and training")
    p.add_argument("--n", type=int, default=None, help="generated pairs per defect type (default: profile's)")
    p.add_argument("--fpr", type=float, default=DEFAULT_FPR,
                   help="false-alarm rate on held-out good training images that sets the thresholds")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a profile setting (saved in model.json)")
    p.add_argument("--out", type=Path, required=True, help="model folder to write (model.json, weights.safetensors)")
    _add_progress(p)
    p.set_defaults(func=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    profile = get_profile(args.profile, **_parse_params(args.set, "--set"))
    if profile.name == "auto":
        raise ConfigError("--profile auto chooses its settings in a benchmark: train with --profile cpu and "
                          "--set fusion=W --set cls_real_share=S from that benchmark's results.json 'selection' "
                          "(and --set size=N from its 'size_choice')")
    info = train_model(args.data, args.out, args.method, category=args.category, run=args.run, profile=profile,
                       seed=args.seed, n=args.n, fpr=args.fpr, data_format=args.data_format, progress=args.progress)
    t = info.thresholds
    how = (f"best F1 on {t.kfold['n_defects']} {t.kfold['k']}-fold held-out training defects" if t.kfold
           else f"{100 * t.fpr:g} % of held-out good pixels")
    print(f"{args.out}: {info.model} for {info.category} ({info.method}, profile {info.profile}); "
          f"image threshold {t.image:.4g} at {100 * t.fpr:g} % false alarms on {t.n_images} held-out good "
          f"training images, pixel threshold {t.pixel:.4g} ({how})")
    return 0


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="score, verdict, defect type, mask and heat map of each image "
                                       "(a model folder, or an exported .onnx run without torch)")
    p.add_argument("model", type=Path, help="model folder (anomalyforge train), or an exported .onnx file "
                                            "(onnxruntime) or .xml file (OpenVINO)")
    p.add_argument("paths", nargs="+", help="image files, folders or glob patterns (any image size)")
    p.add_argument("--out", type=Path, required=True,
                   help="folder for predictions.csv / .jsonl, masks/ and overlays/ (re-running resumes)")
    p.add_argument("--batch", type=int, default=8, help="images per model call")
    p.add_argument("--skip-bad", action="store_true",
                   help="an image that does not decode becomes an error row instead of stopping")
    _add_progress(p)
    p.set_defaults(func=_run_predict)


def _run_predict(args: argparse.Namespace) -> int:
    rows = predict(args.model, args.paths, args.out, batch=args.batch, skip_bad=args.skip_bad,
                   progress=args.progress)
    ok = [r for r in rows if r.status == "ok"]
    n_def = sum(r.verdict == "defect" for r in ok)
    print(f"{args.out}: {len(ok)} images predicted ({n_def} defect, {len(ok) - n_def} good), "
          f"{len(rows) - len(ok)} errors; predictions.csv")
    return 0


def _add_export_model(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export-model", help="write a model folder as one ONNX file or OpenVINO IR "
                                            "(image -> score, map, type probabilities)")
    p.add_argument("model", type=Path, help="model folder (anomalyforge train)")
    p.add_argument("out", type=Path, help="the file to write: OUT.onnx, or OUT.xml (+ OUT.bin) for openvino")
    p.add_argument("--format", dest="fmt", default="onnx",
                   help="export format: onnx (run by onnxruntime) or openvino (needs the openvino package)")
    p.set_defaults(func=_run_export_model)


def _run_export_model(args: argparse.Namespace) -> int:
    path = export_model(args.model, args.out, args.fmt)
    print(f"{path}: exported ({path.stat().st_size / 1e6:.1f} MB); run it with "
          f"`anomalyforge predict {path} IMAGES... --out DIR`")
    return 0


# ---- fewshot (unsupervised detection from K good images) ---------------------------------------
def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise AnomalyForgeError(f"expected comma-separated integers, got {text!r}") from None


def _add_fewshot(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fewshot", help="detectors (PatchCore, anomalib's PaDiM, CFlow, ...) from K good images, "
                                       "with and without generated good images")
    _data_args(p)
    p.add_argument("--out", type=Path, required=True, help="output folder (fewshot.json, fewshot.html, fewshot.png)")
    p.add_argument("--shots", default="1,2,4,8", help="numbers of good images K ('full': every good training image)")
    p.add_argument("--generated", type=int, default=64, help="generated good images added to the K (0: none)")
    p.add_argument("--seeds", default="0,1,2", help="seeds of the K-shot draws and the generated goods")
    p.add_argument("--profile", default="cpu", help="smoke, cpu or paper (image size, PatchCore settings)")
    p.add_argument("--detectors", default=OWN_PATCHCORE,
                   help=f"comma-separated: {OWN_PATCHCORE} (anomalyforge's) and anomalib's "
                        f"{', '.join(DETECTORS)} (on the offline EfficientNet-Lite0)")
    p.add_argument("--detector-epochs", type=int, default=DetectorConfig().epochs,
                   help="training epochs of anomalib's cflow, fastflow and stfpm")
    p.add_argument("--detector-steps", type=int, default=None,
                   help="instead of epochs: about this many training batches whatever K is (fair for one shot)")
    p.add_argument("--flip", action="store_true", help="also flip generated goods (symmetric parts only)")
    p.add_argument("--augment", action="append", metavar="KEY=VALUE",
                   help="generated-good ranges, e.g. rotation=0 translate=0 "
                        "(anomalyforge.synth.good.GoodAugmentConfig)")
    p.add_argument("--base-model", default=None,
                   help="make the generated goods as SDEdit variations with this latent diffusion model "
                        "(diffusers folder or hub id) instead of the model-free augmentation")
    p.add_argument("--strength", type=float, default=0.3, help="SDEdit strength with --base-model")
    p.add_argument("--sampler-steps", type=int, default=50, help="DDIM steps of the full schedule with --base-model")
    p.add_argument("--prompt", default="", help="text prompt of the SDEdit variations; with --goods tvg, the "
                                                "prompt instead of the WordNet keyword search")
    p.add_argument("--device", default=None, help="device of the diffusion model (default: CUDA when available)")
    g = p.add_argument_group("TVG generators (--goods)")
    g.add_argument("--goods", default="augment", choices=FEWSHOT_GOODS,
                   help="generator of the good images: augment (seeded nuisance changes, --augment ranges); "
                        "vae (TVG's variance-aware generator: latent mu + sigma*eps, decoded); tvg (vae + "
                        "WordNet keyword prompt + CLIP guidance); strategy1 (RandomCrop + ColorJitter), "
                        "strategy2 (RandomRotation + RandomAutocontrast), autoaugment, randaugment "
                        "(torchvision's transforms)")
    g.add_argument("--vae", default=None,
                   help="diffusers AutoencoderKL or VQModel (folder or hub id) for vae / tvg; without it a "
                        "small VAE is fitted on the K good images of each draw")
    g.add_argument("--latent", default="mu+sigma*eps", choices=LATENT_SAMPLES,
                   help="latent of vae / tvg goods (TVG's ablation)")
    g.add_argument("--temperature", type=float, default=1.0, help="sigma multiplier of vae / tvg goods")
    g.add_argument("--vae-fit-steps", type=int, default=AutoencoderFit().steps,
                   help="training steps of the small VAE fitted without --vae")
    g.add_argument("--clip", default=None,
                   help="transformers CLIPModel (folder or hub id, TVG: openai/clip-vit-base-patch16) for tvg's "
                        "keyword choice and guidance; without it both are skipped")
    g.add_argument("--keywords", type=int, default=1000, help="WordNet candidate keywords for tvg")
    g.add_argument("--guide-steps", type=int, default=25, help="CLIP guidance steps of tvg (published: 20-30)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a profile setting, e.g. backbone=BACKBONE/ (saved in fewshot.json)")
    _add_progress(p)
    p.set_defaults(func=_run_fewshot)


FEWSHOT_GOODS = ("augment", *VAE_ARMS, *TORCHVISION_ARMS)


def fewshot_generator(args: argparse.Namespace) -> GoodsConfig | None:
    """The TVG generator config `--goods` asks for (None: the default augmentation or SDEdit)."""
    if args.goods in TORCHVISION_ARMS:
        return TorchvisionGoodConfig(args.goods)
    if args.goods in VAE_ARMS:
        return VaeGoodConfig(arm=args.goods, vae=args.vae, latent=args.latent, temperature=args.temperature,
                             fit=AutoencoderFit(steps=args.vae_fit_steps), clip=args.clip, keywords=args.keywords,
                             prompt=args.prompt or None, guide_steps=args.guide_steps, device=args.device)
    return None


def _run_fewshot(args: argparse.Namespace) -> int:

    ranges = {"flip": args.flip, **_parse_params(args.augment)}
    if "scale" in ranges and isinstance(ranges["scale"], list):
        ranges["scale"] = tuple(ranges["scale"])
    try:
        augment = GoodAugmentConfig(**ranges)
    except TypeError as exc:
        raise AnomalyForgeError(f"--augment: {exc}") from None
    diffusion = None
    if args.base_model:

        diffusion = DiffusionGoodConfig(args.base_model, strength=args.strength, steps=args.sampler_steps,
                                        prompt=args.prompt, device=args.device)
    shots: list[int | str] = [FULL if v.strip().lower() == FULL else _int_list(v)[0]
                              for v in args.shots.split(",") if v.strip()]
    doc = run_fewshot_benchmark(args.data, args.out, shots=shots, generated=args.generated,
                                seeds=_int_list(args.seeds),
                                profile=get_profile(args.profile, **_parse_params(args.set, "--set")),
                                category=args.category,
                                data_format=args.data_format, augment=augment, diffusion=diffusion,
                                generator=fewshot_generator(args), progress=args.progress,
                                detectors=args.detectors.split(","),
                                detector_config=DetectorConfig(epochs=args.detector_epochs,
                                                               steps=args.detector_steps))
    print(format_fewshot_table(doc))
    return 0


# ---- pretrain-backbone (TAB) ----------------------------------------------------------------------
def _add_pretrain_backbone(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pretrain-backbone",
                       help="TAB: pretrain the backbone on good training images + synthetic anomalies, aligned "
                            "with text features; use it with --set backbone=BACKBONE/")
    p.add_argument("--data", type=Path, nargs="+", required=True,
                   help="category folders (or dataset roots); only their good training images are read")
    p.add_argument("--class-name", action="append", default=[], metavar="NAME",
                   help="prompt class name of each category in order (default: the folder name, _ as space)")
    p.add_argument("--profile", default="cpu", help="smoke, cpu or paper (epochs, image size, batch)")
    p.add_argument("--text-encoder", default="none",
                   help="CLIP text tower: hub id or local folder (transformers); 'none' = fixed seeded "
                        "orthonormal prototypes, no language in them")
    p.add_argument("--methods", default=",".join(TAB_METHODS), help="synthetic anomalies to learn from")
    p.add_argument("--seed", type=int, default=0, help="seed of the image draw, anomalies, prototypes and order")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a pretraining setting, e.g. epochs=5 (saved in backbone.json)")
    p.add_argument("--device", default=None, help="default: CUDA when available")
    p.add_argument("--out", type=Path, required=True, help="backbone folder to write (resumed when unfinished)")
    _layout_arg(p)
    _add_progress(p)
    p.set_defaults(func=_run_pretrain_backbone)


def _run_pretrain_backbone(args: argparse.Namespace) -> int:
    info = pretrain_backbone(args.data, args.out, profile=args.profile, class_names=args.class_name or None,
                             text_encoder=args.text_encoder, methods=args.methods.split(","), seed=args.seed,
                             data_format=args.data_format, device=args.device, progress=args.progress,
                             **_parse_params(args.set, "--set"))
    last = info.history[-1] if info.history else {}
    print(f"{args.out}: {info.arch} backbone {info.identity} after {info.epochs_done} epoch(s) on "
          f"{', '.join(c['class_name'] for c in info.categories)} (text: {info.text_encoder.get('kind')}); "
          f"last loss {last.get('loss')}; use it with --set backbone={args.out}")
    return 0


_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_info, _add_report, _add_generate, _add_merge, _add_preview, _add_export, _add_make_tiny_model, _add_cluster,
    _add_filter, _add_quality, _add_benchmark, _add_fewshot, _add_train, _add_predict,
    _add_export_model, _add_pretrain_backbone]


class _HelpFormatter(argparse.HelpFormatter):
    """Appends each option's default to its help ("(default: 0.2)"), unless the help already
    speaks of the default or there is nothing to show (None, flags, empty lists)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text, d = action.help or "", action.default
        if (not text or "default" in text or d is None or d is argparse.SUPPRESS or isinstance(d, bool)
                or d == [] or not action.option_strings):
            return text
        shown = f"{d:.4g}" if isinstance(d, float) else str(d)
        return f"{text} (default: {shown.replace('%', '%%')})"


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="anomalyforge",
        description="Few-shot defect image–mask synthesis and an honest downstream benchmark.")
    parser.add_argument("--version", action="version", version=f"anomalyforge {__version__}")
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("-q", "--quiet", action="store_true",
                           help="only results, warnings and errors: no notes, no progress bars")
    verbosity.add_argument("-v", "--verbose", action="store_true", help="also the library's debug log")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add in _COMMANDS:
        add(sub)
    return parser


def os_error_line(exc: OSError) -> str:
    """``PATH: problem`` for an OSError: the file being written (not its hidden ``.NAME.<random>.tmp``), and
    for a path below a regular file, that file."""
    problem = (exc.strerror or str(exc) or exc.__class__.__name__).rstrip(".")
    problem = problem[:1].lower() + problem[1:]
    if exc.filename is None:
        return problem
    path = Path(exc.filename)
    m = TEMP_NAME.fullmatch(path.name)
    if m:
        path = path.with_name(m.group(1))
    if isinstance(exc, NotADirectoryError):
        blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            problem = f"cannot create a folder there: {blocker} is a file"
    return f"{path}: {problem}"


def _add_progress(p: argparse.ArgumentParser) -> None:
    """--progress / --no-progress; by default bars are drawn only when stderr is a terminal."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--progress", dest="progress", action="store_true", default=None,
                   help="draw progress bars even when stderr is not a terminal")
    g.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bars (the default when stderr is not a terminal)")


def _data_warnings_as_lines(previous: Callable) -> Callable:
    """A `warnings.showwarning` printing data warnings as ``warning: FILE: problem`` (one line,
    stderr) and passing every other warning to `previous`."""
    def show(message, category, filename, lineno, file=None, line=None) -> None:
        if issubclass(category, DataWarning):
            print(f"warning: {str(message).splitlines()[0]}", file=file or sys.stderr)
        else:
            previous(message, category, filename, lineno, file, line)
    return show


class _StderrHandler(logging.StreamHandler):
    """A stream handler on whatever `sys.stderr` is when a line is written (not when it was made)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def _setup_logging(args: argparse.Namespace) -> None:
    """Log lines of the `anomalyforge` loggers on stderr: notes by default, only warnings with -q,
    debug with -v; progress bars follow the terminal unless --progress / --no-progress says."""
    level = logging.WARNING if args.quiet else logging.DEBUG if args.verbose else logging.INFO
    root = logging.getLogger("anomalyforge")
    root.setLevel(level)
    if not any(isinstance(h, _StderrHandler) for h in root.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        root.addHandler(handler)
        root.propagate = False
    if getattr(args, "progress", False) is None:
        args.progress = sys.stderr.isatty() and not args.quiet


def _output_path(args: argparse.Namespace) -> Path | None:
    """The folder a command writes into (for file outputs, the file's folder)."""
    out = getattr(args, "out", None) or getattr(args, "dir", None)
    if not isinstance(out, Path):
        return None
    return out.parent if args.command in ("report", "preview", "export-model") else out


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args)
    out = _output_path(args)
    created = first_missing(out) if out is not None else None
    with warnings.catch_warnings():
        warnings.showwarning = _data_warnings_as_lines(warnings.showwarning)
        try:
            return int(args.func(args) or 0)
        except (AnomalyForgeError, OSError) as exc:
            if isinstance(exc, AnomalyForgeError):
                msg = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
            else:
                msg = os_error_line(exc)
            print(f"anomalyforge: error: {msg}", file=sys.stderr)
            remove_created(created, only_if_empty=True)  # what this command made and left empty
            return 2
        except KeyboardInterrupt:
            print("anomalyforge: interrupted (the run can be resumed with the same command)", file=sys.stderr)
            return 130


if __name__ == "__main__":
    sys.exit(main())
