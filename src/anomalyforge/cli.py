"""Command-line interface: a thin layer over documented Python functions.

Every sub-command parses its options and calls one library function; any `AnomalyForgeError`
becomes a one-line message on stderr and exit status 2. Each command owns one `_add_*` /
`_run_*` pair below, so concerns stay separate.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from anomalyforge import __version__
from anomalyforge.data.info import dataset_info, format_info_table
from anomalyforge.diffusion.tiny import make_tiny_model
from anomalyforge.errors import AnomalyForgeError
from anomalyforge.inspect.profiles import get_profile
from anomalyforge.pipelines.benchmark import format_results_table, run_benchmark
from anomalyforge.pipelines.fewshot import format_fewshot_table, run_fewshot_benchmark
from anomalyforge.pipelines.seeds import format_seeds_table, run_benchmark_seeds
from anomalyforge.quality.ars import ARSConfig
from anomalyforge.quality.cluster import ClusterConfig, cluster_category, format_clusters
from anomalyforge.quality.filter import filter_run, format_summary
from anomalyforge.quality.generation import QualityConfig, format_quality_comparison, format_quality_table, score_run
from anomalyforge.report.html import write_report
from anomalyforge.report.preview import contact_sheet
from anomalyforge.synth.export import export_run
from anomalyforge.synth.good import DiffusionGoodConfig, GoodAugmentConfig
from anomalyforge.synth.run import generate_run


def _data_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    """Options every data-reading command shares: PATH, --category, --format."""
    p.add_argument("--data", type=Path, required=required,
                   help="dataset root or one category's folder")
    p.add_argument("--category", default=None, help="category to use when --data holds several")
    p.add_argument("--format", dest="data_format", default=None,
                   help="force the layout (mvtec, mvtec_loco, mvtec3d, visa, btad, magnetic_tile, folder)")


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
    p.add_argument("path", type=Path, help="dataset root or one category's folder")
    p.add_argument("--category", default=None)
    p.add_argument("--format", dest="data_format", default=None)
    p.add_argument("--ratio", type=float, default=1 / 3, help="few-shot training fraction per defect type")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--holdout", type=float, default=0.2,
                   help="fraction of good images held out for testing when the layout has no test split")
    p.add_argument("--seed", type=int, default=0, help="seed of the held-out good images")
    p.add_argument("--mask-threshold", type=int, default=128, help="grey level at which masks are binarised")
    p.add_argument("--no-verify", dest="verify", action="store_false",
                   help="skip decoding every image and mask (faster; header checks only)")
    p.add_argument("--no-progress", dest="progress", action="store_false", default=None,
                   help="hide progress bars")
    p.set_defaults(func=_run_info)


def _run_info(args: argparse.Namespace) -> int:

    infos = dataset_info(args.path, category=args.category, data_format=args.data_format, ratio=args.ratio,
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
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(func=_run_report)


def _run_report(args: argparse.Namespace) -> int:

    out = write_report(args.bench_dir, args.out, progress=not args.no_progress)
    print(out)
    return 0


# ---- generate / preview / export (synthesis runs) ---------------------------------------------
def _add_generate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="fit a synthesis method on the few-shot split and write defect pairs")
    _data_args(p)
    p.add_argument("--method", default="croppaste", help="synthesis method (croppaste, cutpaste, perlin, ...)")
    p.add_argument("--n", type=int, default=100, help="pairs per defect type")
    p.add_argument("--out", type=Path, required=True, help="run folder (resumed/extended when it holds the same run)")
    p.add_argument("--types", default=None, help="comma-separated defect types (default: all with masks)")
    p.add_argument("--seed", type=int, default=0)
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
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_generate)


def _run_generate(args: argparse.Namespace) -> int:

    params = _parse_params(args.param)
    for key in ("base_model", "fit_steps", "sampler_steps", "device"):
        if getattr(args, key) is not None:
            params[key] = getattr(args, key)
    types = [t.strip() for t in args.types.split(",") if t.strip()] if args.types else None
    s = generate_run(args.data, args.out, method=args.method, n=args.n, category=args.category, types=types,
                     seed=args.seed, size=args.size, params=params, data_format=args.data_format,
                     progress=not args.no_progress, subtypes=args.subtypes, keep_ratio=args.keep_ratio)
    print(f"{'defect type':<24} {'pairs':>7} {'kept':>7}")
    for t, k in s["pairs"].items():
        print(f"{t:<24} {k:>7} {s['kept'].get(t, k):>7}")
    why = ", ".join(f"{k} {v}" for k, v in sorted(s.get("rejected_drafts", {}).items()))
    print(f"{s['category']}/{s['method']}: {s['new']} new pairs in {s['seconds']:.1f} s "
          f"({s['pairs_per_s']:.1f} pairs/s, {s['redraws']} redraws{': ' + why if why else ''}) -> {s['run']}")
    return 0


def _add_preview(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("preview", help="PNG contact sheet of a generation run")
    p.add_argument("run", type=Path, help="run folder written by generate")
    p.add_argument("--out", type=Path, default=None, help="PNG to write (default RUN/preview.png)")
    p.add_argument("--per-type", type=int, default=8, help="pairs shown per defect type")
    p.set_defaults(func=_run_preview)


def _run_preview(args: argparse.Namespace) -> int:

    print(contact_sheet(args.run, out=args.out, per_type=args.per_type))
    return 0


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a run in a layout other tools read (MVTec AD)")
    p.add_argument("run", type=Path, help="run folder written by generate")
    p.add_argument("out", type=Path, help="dataset root to write (OUT/<category>/...)")
    p.add_argument("--format", default="mvtec", help="output layout (mvtec)")
    p.add_argument("--test-good", type=float, default=0.1,
                   help="share of the good images written to test/good instead of train/good (default 0.1)")
    p.add_argument("--train-share", type=float, default=0.5,
                   help="share of the other good images written to train/good; none of them is the background "
                        "of an exported defect (their pairs are left out; default 0.5)")
    p.add_argument("--shared-backgrounds", action="store_true",
                   help="old, leaky split: every good in train/good and every pair, although the defects' "
                        "backgrounds are then in train/good")
    p.set_defaults(func=_run_export)


def _run_export(args: argparse.Namespace) -> int:

    print(export_run(args.run, args.out, format=args.format, test_good=args.test_good,
                     train_share=args.train_share, shared_backgrounds=args.shared_backgrounds))
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
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ratio", type=float, default=1 / 3, help="few-shot training fraction per defect type")
    p.add_argument("--extractor", default="cnn", help="deep features: cnn (EfficientNet-Lite0) or vit")
    p.add_argument("--extractor-weights", default=None, help="weights file for --extractor vit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_cluster)


def _run_cluster(args: argparse.Namespace) -> int:

    cfg = ClusterConfig(size=args.size, extractor=args.extractor,
                        extractor_weights=args.extractor_weights or ("imagenet" if args.extractor == "cnn" else None))
    notes: list[str] = []
    clusters = cluster_category(args.data, category=args.category, data_format=args.data_format, size=args.size,
                                seed=args.seed, out=args.out, config=cfg, ratio=args.ratio,
                                progress=not args.no_progress, notes=notes)
    print(format_clusters(clusters))
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    if args.out is not None:
        print(f"clusters.json and contact sheets -> {args.out}")
    return 0


def _add_filter(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("filter", help="score a run's pairs by Anomaly Region Score and reject the worst")
    p.add_argument("run", type=Path, help="run folder written by generate")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--keep", type=int, default=None, help="pairs kept per defect type (highest ARS)")
    g.add_argument("--keep-ratio", type=float, default=None, help="fraction kept per defect type")
    p.add_argument("--data", type=Path, default=None, help="dataset whose good training images train the "
                                                           "discriminator (default: from the run's run.json)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=None, help="discriminator training steps")
    p.add_argument("--stratify", choices=("source", "type"), default="source",
                   help="source (default): share each defect type's budget over the real defects its pairs "
                        "were made from, keeping every few-shot defect; type: rank a type's pairs together "
                        "(GAA as published)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_filter)


def _run_filter(args: argparse.Namespace) -> int:

    config = None
    if args.steps is not None:

        config = ARSConfig(steps=args.steps)
    summary = filter_run(args.run, keep=args.keep, keep_ratio=args.keep_ratio, seed=args.seed, data=args.data,
                         config=config, progress=not args.no_progress, stratify=args.stratify)
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
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: CUDA when available)")
    p.add_argument("--json", action="store_true", help="print the quality.json document")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_quality)


def _run_quality(args: argparse.Namespace) -> int:

    def weights(v: str) -> str | None:
        return None if v.lower() == "none" else v

    cfg = QualityConfig(classifier=args.classifier, classifier_weights=weights(args.classifier_weights),
                        lpips=args.lpips, lpips_weights=weights(args.lpips_weights),
                        per_cluster=args.per_cluster, seed=args.seed, device=args.device)
    for run in args.runs:  # check every folder before scoring any
        if not (run / "manifest.jsonl").is_file():
            raise AnomalyForgeError(f"{run}: not a generation run (no manifest.jsonl)")
    docs = [score_run(run, cfg, progress=not args.no_progress) for run in args.runs]
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
                   help="comma-separated generator names and/or patchcore (the no-synthesis baseline)")
    p.add_argument("--profile", default="cpu", help="smoke, cpu or paper")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", default=None, metavar="S1,S2,...",
                   help="run once per seed (OUT/seed-S/) and summarise the spread (OUT/summary.html)")
    p.add_argument("--n", type=int, default=None, help="generated pairs per defect type (default: profile's)")
    p.add_argument("--out", type=Path, required=True, help="benchmark folder (results.json, runs/, methods/)")
    p.add_argument("--run", action="append", default=[], metavar="METHOD=RUNDIR",
                   help="reuse an existing generated run for METHOD (repeatable)")
    p.add_argument("--no-quality", action="store_true",
                   help="skip the generation-quality scores (IS, IC-LPIPS) of each method's pairs")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a profile setting, e.g. fusion=0 or cls_real_share=0 (saved in results.json)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
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
    methods = [m for m in args.methods.split(",") if m.strip()]
    if args.seeds is not None:

        if runs:
            raise AnomalyForgeError("--run with --seeds: a fixed generated run does not change with the seed")
        if args.seed != 0:
            raise AnomalyForgeError("give --seed or --seeds, not both")
        summary = run_benchmark_seeds(args.data, args.out, methods, _int_list(args.seeds), category=args.category,
                                      profile=profile, n=args.n, data_format=args.data_format,
                                      progress=not args.no_progress)
        print(format_seeds_table(summary))
        return 0
    results = run_benchmark(args.data, args.out, methods, category=args.category, profile=profile,
                            seed=args.seed, n=args.n, data_format=args.data_format, runs=runs,
                            progress=not args.no_progress)
    print(format_results_table(results))
    return 0


# ---- fewshot (unsupervised detection from K good images) ---------------------------------------
def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise AnomalyForgeError(f"expected comma-separated integers, got {text!r}") from None


def _add_fewshot(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fewshot", help="PatchCore from K good images, with and without generated good images")
    _data_args(p)
    p.add_argument("--out", type=Path, required=True, help="output folder (fewshot.json, fewshot.html, fewshot.png)")
    p.add_argument("--shots", default="1,2,4,8", help="numbers of good images K")
    p.add_argument("--generated", type=int, default=64, help="generated good images added to the K (0: none)")
    p.add_argument("--seeds", default="0,1,2", help="seeds of the K-shot draws and the generated goods")
    p.add_argument("--profile", default="cpu", help="smoke, cpu or paper (image size, PatchCore settings)")
    p.add_argument("--flip", action="store_true", help="also flip generated goods (symmetric parts only)")
    p.add_argument("--augment", action="append", metavar="KEY=VALUE",
                   help="generated-good ranges, e.g. rotation=0 translate=0 "
                        "(anomalyforge.synth.good.GoodAugmentConfig)")
    p.add_argument("--base-model", default=None,
                   help="make the generated goods as SDEdit variations with this latent diffusion model "
                        "(diffusers folder or hub id) instead of the model-free augmentation")
    p.add_argument("--strength", type=float, default=0.3, help="SDEdit strength with --base-model")
    p.add_argument("--sampler-steps", type=int, default=50, help="DDIM steps of the full schedule with --base-model")
    p.add_argument("--prompt", default="", help="text prompt of the SDEdit variations")
    p.add_argument("--device", default=None, help="device of the diffusion model (default: CUDA when available)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_run_fewshot)


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
    doc = run_fewshot_benchmark(args.data, args.out, shots=_int_list(args.shots), generated=args.generated,
                                seeds=_int_list(args.seeds), profile=args.profile, category=args.category,
                                data_format=args.data_format, augment=augment, diffusion=diffusion,
                                progress=not args.no_progress)
    print(format_fewshot_table(doc))
    return 0


_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_info, _add_report, _add_generate, _add_preview, _add_export, _add_make_tiny_model, _add_cluster,
    _add_filter, _add_quality, _add_benchmark, _add_fewshot]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="anomalyforge",
        description="Few-shot defect image–mask synthesis and an honest downstream benchmark.")
    parser.add_argument("--version", action="version", version=f"anomalyforge {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in _COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except AnomalyForgeError as exc:
        msg = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        print(f"anomalyforge: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("anomalyforge: interrupted (the run can be resumed with the same command)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
