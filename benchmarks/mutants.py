"""Mutation spot-check: plant one plausible bug at a time in a temporary copy of the tree, run only
the tests that should notice, and report which mutants survive.

    /work/main/.venv/bin/python benchmarks/mutants.py              # every mutant, table on stdout
    /work/main/.venv/bin/python benchmarks/mutants.py -k patchcore # mutants whose name contains it
    /work/main/.venv/bin/python benchmarks/mutants.py -k aar,seed  # ... any of these
    /work/main/.venv/bin/python benchmarks/mutants.py --list       # the list only
    /work/main/.venv/bin/python benchmarks/mutants.py --json out.json

The real files are never edited: for each mutant `src/`, `tests/` and `pyproject.toml` are copied
into a fresh temporary folder, the snippet is replaced there (it must occur exactly once, matched
by text, not line number, so the list survives edits and moves: update `file` when a module
moves), and pytest runs there on the mutant's tests with that copy's `src` first on PYTHONPATH,
one thread (OMP_NUM_THREADS=1, ANOMALYFORGE_TEST_THREADS=1) and `--require-data` (a mutant
"survives" only when its tests ran and passed; missing data is an error, never a skip).
A mutant is killed when its tests fail. Exit status: 0 when every mutant is killed, 1 otherwise,
2 when a snippet no longer matches (the list needs updating).

Real data: ANOMALYFORGE_DATASETS, else ../shared/datasets beside the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutant:
    name: str
    file: str  # path relative to the repository root
    original: str  # exact text, must occur once in `file`
    replacement: str
    tests: tuple[str, ...]  # test files or node ids (relative to the repository root)
    why: str = ""  # the bug it stands for


PC = "src/anomalyforge/inspect/patchcore.py"
MUTANTS: list[Mutant] = [
    # --- synthesis: crop-paste and resume ------------------------------------------------------
    Mutant("croppaste-unwarped-pixels", "src/anomalyforge/synth/croppaste.py",
           "warped = cv2.warpAffine(d_img, mat, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)",
           "warped = d_img.copy()",
           ("tests/synth/test_synth_generators.py::test_croppaste_pastes_the_defects_own_pixels_transformed",),
           "mask placed, defect pixels not warped"),
    Mutant("resume-forgets-rejected", "src/anomalyforge/synth/run.py",
           "records = read_pairs(out, include_rejected=True)\n    bad =",
           "records = read_pairs(out)\n    bad =",
           ("tests/synth/test_synth_run.py::test_keep_ratio_generates_more_and_keeps_the_best_by_ars",),
           "resume's done-set lacks rejected pairs: a finished --keep-ratio run regenerates them"),
    Mutant("resume-redoes-everything", "src/anomalyforge/synth/run.py",
           "if pair_id(t, i) not in done]", "]",
           ("tests/synth/test_synth_run.py::test_keep_ratio_generates_more_and_keeps_the_best_by_ars",),
           "resume regenerates pairs that are already on disk"),
    # --- PatchCore and fusion ------------------------------------------------------------------
    Mutant("patchcore-transposed-map", PC,
           "maps.append(gaussian_filter(m[k, 0].cpu().numpy(), self.sigma)",
           "maps.append(gaussian_filter(m[k, 0].cpu().numpy().T, self.sigma)",
           ("tests/inspect/test_patchcore.py",), "maps with h and w swapped"),
    Mutant("patchcore-first-map-of-batch", PC,
           "maps.append(gaussian_filter(m[k, 0].cpu().numpy(), self.sigma)",
           "maps.append(gaussian_filter(m[0, 0].cpu().numpy(), self.sigma)",
           ("tests/inspect/test_patchcore.py",), "every image of a batch gets the first image's map"),
    Mutant("patchcore-farthest-neighbour", PC,
           "torch.cdist(q[j:j + chunk], self.bank).min(1).values",
           "torch.cdist(q[j:j + chunk], self.bank).max(1).values",
           ("tests/inspect/test_patchcore.py",), "distance to the farthest bank entry"),
    Mutant("fusion-weights-swapped", "src/anomalyforge/inspect/train.py",
           "((1.0 - self.weight) * zs + self.weight * zp)",
           "(self.weight * zs + (1.0 - self.weight) * zp)",
           ("tests/inspect/test_fusion.py::test_fused_localizer_flags_pasted_defects_and_is_deterministic",),
           "fusion weight applied to the wrong map"),
    Mutant("fusion-pc-standardised-by-sup-stats", "src/anomalyforge/inspect/train.py",
           "zp = (self.patchcore.predict(images, progress) - self.pc_stats[0]) / self.pc_stats[1]",
           "zp = (self.patchcore.predict(images, progress) - self.sup_stats[0]) / self.sup_stats[1]",
           ("tests/inspect/test_fusion.py::test_fused_localizer_flags_pasted_defects_and_is_deterministic",),
           "PatchCore map standardised with the supervised model's statistics"),
    # --- few-shot split --------------------------------------------------------------------------
    Mutant("split-one-extra-training-defect", "src/anomalyforge/data/fewshot.py",
           "train = ok[:n_train(len(ok), ratio)]", "train = ok[:n_train(len(ok), ratio) + 1]",
           ("tests/data/test_data_fewshot.py",), "ceil(n / 3) + 1 training defects"),
    Mutant("split-training-defects-leak-into-test", "src/anomalyforge/data/fewshot.py",
           "test_defects[dtype] = [s for s in items if s not in chosen]", "test_defects[dtype] = list(items)",
           ("tests/data/test_data_fewshot.py",), "training defects also tested"),
    Mutant("split-holdout-not-removed-from-train", "src/anomalyforge/data/fewshot.py",
           "train_good = [s for i, s in enumerate(train_good) if i not in picked]", "pass",
           ("tests/data/test_data_fewshot.py",), "held-out good images stay in training (Magnetic Tile)"),
    # --- metrics ---------------------------------------------------------------------------------
    Mutant("auroc-ties-count-one", "src/anomalyforge/metrics/ranking.py",
           "return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1])) * 0.5)",
           "return float(np.sum(np.diff(fpr) * tpr[1:]))",
           ("tests/metrics/test_ranking.py",), "tied positive/negative pairs count 1 instead of 1/2"),
    Mutant("ap-precision-off-by-one", "src/anomalyforge/metrics/ranking.py",
           "precision = c.pos / (c.pos + c.neg)\n    recall_step",
           "precision = c.pos / (c.pos + c.neg + 1)\n    recall_step",
           ("tests/metrics/test_ranking.py",), "precision with one false positive too many"),
    Mutant("f1-lowest-threshold-among-ties", "src/anomalyforge/metrics/ranking.py",
           "k = int(np.argmax(f1))", "k = int(f1.size - 1 - np.argmax(f1[::-1]))",
           ("tests/metrics/test_ranking.py", "tests/metrics/test_classes.py"),
           "best-F1 threshold: the lowest instead of the highest among equal F1"),
    Mutant("aupro-not-normalised", "src/anomalyforge/metrics/pro.py",
           "return area_to(curve.fpr, curve.pro, fpr_limit) / fpr_limit",
           "return area_to(curve.fpr, curve.pro, fpr_limit)",
           ("tests/metrics/test_pro.py",), "AUPRO not divided by the FPR limit"),
    Mutant("aupro-no-interpolation-at-limit", "src/anomalyforge/metrics/pro.py",
           "    if k < x.size and xs[-1] < x_max:", "    if False:",
           ("tests/metrics/test_pro.py",), "PRO area stops at the last vertex below the limit"),
    # --- thresholds ------------------------------------------------------------------------------
    Mutant("mask-threshold-strict", "src/anomalyforge/data/io.py",
           "return np.where(arr >= min(threshold, 64), 255, 0).astype(np.uint8)\n    return np.where(arr >= threshold,",
           "return np.where(arr >= min(threshold, 64), 255, 0).astype(np.uint8)\n    return np.where(arr > threshold,",
           ("tests/data/test_data_io.py",), "soft mask binarised at > instead of >= threshold"),
    Mutant("changed-pixel-threshold-ignored", "src/anomalyforge/synth/mf_base.py",
           "changed = np.abs(img.astype(np.int16) - src.astype(np.int16)).max(axis=2) > cfg.diff_threshold",
           "changed = np.abs(img.astype(np.int16) - src.astype(np.int16)).max(axis=2) > 0",
           ("tests/synth/test_synth_generators.py::test_pairs_mark_exactly_the_changed_region",
            "tests/synth/test_synth_generators.py::test_mask_grows_only_over_pixels_changed_beyond_the_threshold"),
           "any 1-level change counts as a changed pixel"),
    # --- ARS and filtering -----------------------------------------------------------------------
    Mutant("ars-mean-over-whole-map", "src/anomalyforge/quality/ars.py",
           "out[i] = float(amap[sel].mean())", "out[i] = float(amap.mean())",
           ("tests/quality/test_quality_ars.py",), "ARS ignores the mask"),
    Mutant("ars-sign-flipped", "src/anomalyforge/quality/ars.py",
           "s = -self.discriminator(", "s = self.discriminator(",
           ("tests/quality/test_quality_ars.py",), "anomaly map = +D (good patches score high)"),
    Mutant("filter-keeps-the-worst", "src/anomalyforge/quality/filter.py",
           'key=lambda r: (-key(r), str(r.get("id")))', 'key=lambda r: (key(r), str(r.get("id")))',
           ("tests/quality/test_quality_filter.py",
            "tests/synth/test_synth_run.py::test_keep_ratio_generates_more_and_keeps_the_best_by_ars"),
           "ARS filter keeps the lowest-scoring pairs"),
    Mutant("filter-keep-ratio-rounds-down", "src/anomalyforge/quality/filter.py",
           "return min(n, math.ceil(n * keep_ratio))", "return min(n, int(n * keep_ratio))",
           ("tests/quality/test_quality_filter.py",), "keep_ratio rounds down (ceil documented)"),
    # --- formats: run.json training files, manifest --------------------------------------------
    Mutant("run-training-hash-not-checked", "src/anomalyforge/formats/run.py",
           "if p is not None and (not resolve(p).is_file() or sha256_file(resolve(p)) != h):",
           "if p is not None and not resolve(p).is_file():",
           ("tests/formats/test_run_trust.py::test_a_changed_training_file_is_refused",),
           "a training file whose bytes changed since the run was made is trusted"),
    Mutant("read-pairs-includes-rejected", "src/anomalyforge/formats/manifest.py",
           "return recs if include_rejected else [r for r in recs if not r.rejected]", "return recs",
           ("tests/formats/test_formats.py::test_manifest_round_trip_torn_line_and_rejected",
            "tests/pipelines/test_benchmark_runs.py::test_labelled_run_is_benchmarked_without_rejected_pairs"),
           "pairs rejected by the ARS filter are read (and trained on) by default"),
    # --- export ----------------------------------------------------------------------------------
    Mutant("export-background-in-train", "src/anomalyforge/synth/export.py",
           "in_train = {_key(g) for g in train}", "in_train: set[str] = set()",
           ("tests/synth/test_synth_export_cli.py::test_export_train_good_holds_no_background_of_a_test_defect",
            "tests/synth/test_synth_export_cli.py::test_split_goods_leaves_out_the_defects_painted_on_a_training_good"),
           "split_goods keeps defects whose background is also in train/good"),
    # --- benchmark heat-map scale ----------------------------------------------------------------
    Mutant("display-scale-on-test-goods", "src/anomalyforge/pipelines/benchmark.py",
           "scale = _display_scale(loc_model.predict, scale_images(), progress)",
           "scale = _display_scale(loc_model.predict, test_set().images[test_set().labels == 0], progress)",
           ("tests/pipelines/test_benchmark.py::test_results_follow_the_schema",),
           "heat-map scale set on the test good images"),
    Mutant("display-scale-on-trained-goods", "src/anomalyforge/pipelines/benchmark.py",
           "scale = _display_scale(pc.predict, scale_images(), progress)",
           "scale = _display_scale(pc.predict, good_images(fit, prof.size, progress)[:len(scale_images())], "
           "progress)",
           ("tests/pipelines/test_benchmark.py::test_results_follow_the_schema",),
           "PatchCore's heat-map scale set on good images in its memory bank"),
    # --- diffusion -------------------------------------------------------------------------------
    Mutant("aar-weights-not-clipped", "src/anomalyforge/diffusion/attention.py",
           "return w.clamp(AAR_MIN_WEIGHT, AAR_MAX_WEIGHT)", "return w",
           ("tests/diffusion/test_attention.py::test_aar_weights_per_cell_normalised_and_clipped",),
           "AAR weights not clipped to [1, 1.5]"),
    # --- seed streams ----------------------------------------------------------------------------
    Mutant("seed-streams-collide", "src/anomalyforge/seeds.py", "    MASK = 2\n", "    MASK = 3\n",
           ("tests/test_seed_streams.py",),
           "masks and good images of a pair drawn from one stream (MASK == GOOD_IMAGE)"),
    Mutant("seed-stream-renumbered", "src/anomalyforge/seeds.py", "    SHOTS = 7\n", "    SHOTS = 8\n",
           ("tests/test_seed_streams.py",), "a stream's value changed: published few-shot draws no longer reproduce"),
]


def datasets() -> Path:
    return Path(os.environ.get("ANOMALYFORGE_DATASETS", REPO.parent / "shared" / "datasets"))


def check(mutants: list[Mutant]) -> list[str]:
    """Problems with the list itself: snippets that no longer occur exactly once, missing tests."""
    bad = []
    for m in mutants:
        path = REPO / m.file
        if not path.is_file():
            bad.append(f"{m.name}: {m.file} not found")
            continue
        n = path.read_text().count(m.original)
        if n != 1:
            bad.append(f"{m.name}: snippet occurs {n} times in {m.file} (expected once)")
        for t in m.tests:
            if not (REPO / t.split("::")[0]).is_file():
                bad.append(f"{m.name}: test file {t.split('::')[0]} not found")
    return bad


def run_one(m: Mutant, python: str, timeout: float) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"mutant-{m.name}-") as tmp:
        root = Path(tmp)
        for part in ("src", "tests"):
            shutil.copytree(REPO / part, root / part, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        shutil.copy2(REPO / "pyproject.toml", root / "pyproject.toml")
        target = root / m.file
        text = target.read_text()
        assert text.count(m.original) == 1, m.name
        target.write_text(text.replace(m.original, m.replacement))
        env = dict(os.environ, PYTHONPATH=str(root / "src"), OMP_NUM_THREADS="1", ANOMALYFORGE_TEST_THREADS="1",
                   ANOMALYFORGE_DATASETS=str(datasets()), PYTHONDONTWRITEBYTECODE="1")
        cmd = [python, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "--require-data", "-o", "addopts=", "-rfE",
               *m.tests]
        t0 = time.perf_counter()
        try:
            p = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
            rc, out = p.returncode, p.stdout + p.stderr
        except subprocess.TimeoutExpired:
            rc, out = -1, "timeout"
        secs = time.perf_counter() - t0
    lines = [ln for ln in out.splitlines() if ln.strip()]
    failed = next((ln.split(" - ")[0].split(" ", 1)[1] + (" (error)" if ln.startswith("ERROR") else "")
                   for ln in lines if ln.startswith(("FAILED ", "ERROR "))), "")
    if rc == 0:
        status = "SURVIVED"
    elif rc == 1:
        status = "killed"
    else:  # collection error, usage error, timeout: not a clean kill, show it
        status = f"error (rc {rc})"
    return {**asdict(m), "status": status, "killed_by": failed, "seconds": round(secs, 1),
            "summary": lines[-1] if lines else ""}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-k", default="", help="only mutants whose name contains this (several: comma-separated)")
    ap.add_argument("--list", action="store_true", help="print the mutants and exit")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--python", default=sys.executable, help="interpreter that runs pytest")
    ap.add_argument("--timeout", type=float, default=600, help="seconds per mutant")
    args = ap.parse_args(argv)
    keys = [k.strip() for k in args.k.split(",")]
    chosen = [m for m in MUTANTS if any(k in m.name for k in keys)]
    bad = check(chosen)
    if bad:
        print("mutant list out of date:\n  " + "\n  ".join(bad), file=sys.stderr)
        return 2
    if args.list:
        for m in chosen:
            print(f"{m.name:40s} {m.file}  ->  {', '.join(m.tests)}")
        return 0
    if not datasets().is_dir():
        print(f"real datasets not found at {datasets()} (set ANOMALYFORGE_DATASETS)", file=sys.stderr)
        return 2
    results = []
    for m in chosen:
        r = run_one(m, args.python, args.timeout)
        results.append(r)
        print(f"{r['status']:>10s}  {m.name}  ({r['seconds']} s) {r['killed_by']}", file=sys.stderr, flush=True)
    print("| mutant | file | planted bug | status | killed by |")
    print("|---|---|---|---|---|")
    for r in results:
        print(f"| {r['name']} | {r['file'].removeprefix('src/anomalyforge/')} | {r['why']} | {r['status']} | "
              f"{r['killed_by'] or r['summary']} |")
    killed = sum(r["status"] == "killed" for r in results)
    print(f"\n{killed} of {len(results)} mutants killed; survivors: "
          f"{', '.join(r['name'] for r in results if r['status'] != 'killed') or 'none'}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0 if killed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
