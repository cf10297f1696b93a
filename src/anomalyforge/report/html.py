"""The benchmark report: one self-contained HTML file built from a finished benchmark folder.

`write_report(bench_dir)` reads `<bench_dir>/results.json` and each method's maps.npz and
generated run, and writes `report.html` with every picture embedded as a base64 PNG and the
CSS inline, so the file can be mailed or archived alone. Missing pieces (no classification,
no maps, no generated run) become notes in the report; only a missing results.json is an error.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from jinja2 import Environment, PackageLoader, select_autoescape
from tqdm import tqdm

from anomalyforge import __version__
from anomalyforge.atomic import write_text_atomic
from anomalyforge.data.io import read_image, read_mask
from anomalyforge.errors import AnomalyForgeError, ConfigError, DataError
from anomalyforge.report import figures
from anomalyforge.report.published import CAVEAT, COLUMNS, published_for
from anomalyforge.report.results import Maps, load_manifest, load_maps, load_results

REPORT_FILE = "report.html"
TILE = 192  # displayed size of one image panel (px)
SAMPLES_PER_TYPE = 2  # test images shown per defect type, and good images shown
PAIRS_PER_TYPE = 2  # generated pairs shown per defect type
MAX_PAIRS = 8
DASH = "—"


# ---- formatting ------------------------------------------------------------------------------
def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v)


def fmt_pct(v: Any) -> str:
    """A raw metric in [0, 1] as a percentage with one decimal ('96.7'); '—' when unknown."""
    x = _num(v)
    return DASH if x is None else f"{100.0 * x:.1f}"


def fmt_seconds(v: Any) -> str:
    x = _num(v)
    if x is None:
        return DASH
    if x < 120:
        return f"{x:.1f} s"
    if x < 7200:
        return f"{x / 60:.1f} min"
    return f"{x / 3600:.1f} h"


def fmt_mb(v: Any) -> str:
    x = _num(v)
    return DASH if x is None else f"{x:,.0f} MB"


def fmt_num(v: Any) -> str:
    x = _num(v)
    return DASH if x is None else f"{x:.3f}"


def fmt_int(v: Any) -> str:
    x = _num(v)
    return DASH if x is None else f"{int(x):,}"


def _get(d: Any, *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


# Results-table columns: (header, group, value getter, formatter, best = max | min).
_Column = tuple[str, str, Callable[[dict], Any], Callable[[Any], str], str]
RESULT_COLUMNS: list[_Column] = [
    ("AUROC", "pixel", lambda m: _get(m, "localization", "pixel", "auroc"), fmt_pct, "max"),
    ("AP", "pixel", lambda m: _get(m, "localization", "pixel", "ap"), fmt_pct, "max"),
    ("F1-max", "pixel", lambda m: _get(m, "localization", "pixel", "f1_max"), fmt_pct, "max"),
    ("AUPRO", "pixel", lambda m: _get(m, "localization", "pixel", "aupro"), fmt_pct, "max"),
    ("AUROC", "image", lambda m: _get(m, "localization", "image", "auroc"), fmt_pct, "max"),
    ("AP", "image", lambda m: _get(m, "localization", "image", "ap"), fmt_pct, "max"),
    ("F1-max", "image", lambda m: _get(m, "localization", "image", "f1_max"), fmt_pct, "max"),
    ("accuracy", "classification", lambda m: _get(m, "classification", "accuracy"), fmt_pct, "max"),
    ("IS", "generation", lambda m: _get(m, "generation", "is"), fmt_num, "max"),
    ("IC-LPIPS", "generation", lambda m: _get(m, "generation", "ic_lpips"), fmt_num, "max"),
    ("total time", "cost", lambda m: _get(m, "timings", "total_s"), fmt_seconds, "min"),
]
# No memory column: results.json's peak_rss_mb is the whole process's peak so far (getrusage), not a
# method's own memory, so it is shown once, for the whole benchmark, and never compared.


def results_table(methods: dict[str, dict]) -> dict:
    """Header groups and rows of the main table, with the best value per column marked bold."""
    names = list(methods)
    cells: list[list[dict]] = [[] for _ in names]
    for _header, _group, get, fmt, better in RESULT_COLUMNS:
        vals = [_num(get(methods[n])) if methods[n].get("status", "done") == "done" else None for n in names]
        shown = [fmt(v) for v in vals]
        known = [(v, s) for v, s in zip(vals, shown, strict=False) if v is not None]
        best = None
        if len(known) > 1:
            best = (max if better == "max" else min)(known, key=lambda t: t[0])[1]
        for i, (v, s) in enumerate(zip(vals, shown, strict=False)):
            cells[i].append({"text": s, "best": best is not None and v is not None and s == best})
    groups: list[dict] = []
    for _header, group, *_ in RESULT_COLUMNS:
        if groups and groups[-1]["name"] == group:
            groups[-1]["span"] += 1
        else:
            groups.append({"name": group, "span": 1})
    rows = []
    for name, row in zip(names, cells, strict=False):
        m = methods[name]
        rows.append({"name": name, "anchor": _anchor(name), "kind": m.get("kind", DASH), "model": m.get("model", DASH),
                     "status": m.get("status", "done"), "baseline": m.get("kind") == "baseline",
                     "n_pairs": fmt_int(m.get("n_pairs")), "cells": row})
    return {"groups": groups, "headers": [c[0] for c in RESULT_COLUMNS], "rows": rows}


def process_peak(methods: dict[str, dict]) -> str | None:
    """The benchmark process's peak resident memory (the largest recorded peak_rss_mb), or None."""
    peaks = [v for v in (_num(m.get("peak_rss_mb")) for m in methods.values()) if v is not None]
    return fmt_mb(max(peaks)) if peaks else None


# ---- header ----------------------------------------------------------------------------------
def split_rows(split: dict) -> list[dict]:
    """Per defect type: real defect images used for fitting vs. held out for testing."""
    train = split.get("train_defects") or {}
    test = split.get("test_defects") or {}
    rows = [{"type": t, "train": fmt_int(train.get(t)), "test": fmt_int(test.get(t))}
            for t in sorted(set(train) | set(test))]
    rows.append({"type": "good", "train": fmt_int(split.get("train_good")),
                 "test": fmt_int(split.get("test_good")), "good": True})
    return rows


def published_table(res: dict) -> dict:
    """Published rows for this dataset/category next to this benchmark's same metrics."""
    cfg = c if isinstance(c := res.get("config"), dict) else {}
    hints = [cfg.get("data_format"), cfg.get("format"), res.get("data_format"), res.get("data"), cfg.get("data")]
    key, rows = published_for(str(res.get("category", "")), *[h for h in hints if isinstance(h, str)])
    pub = [{"method": r["method"], "setting": r.get("setting", ""), "source": r.get("source", ""),
            "cells": [DASH if r.get(k) is None else f"{float(r[k]):.1f}" for k in COLUMNS]} for r in rows]
    ours = []
    for name, m in (res.get("methods") or {}).items():
        if m.get("status", "done") != "done":
            continue
        vals = [_get(m, "localization", "pixel", "auroc"), _get(m, "localization", "pixel", "ap"),
                _get(m, "classification", "accuracy")]
        ours.append({"method": name, "setting": f"{m.get('model', DASH)} ({m.get('kind', DASH)})",
                     "cells": [fmt_pct(v) for v in vals], "baseline": m.get("kind") == "baseline"})
    return {"key": key, "headers": list(COLUMNS.values()), "published": pub, "ours": ours}


# ---- per method ------------------------------------------------------------------------------
def select_samples(maps: Maps, per_type: int = SAMPLES_PER_TYPE) -> list[int]:
    """Fixed selection: per defect type the first `per_type` by path, then `per_type` good images."""
    chosen: list[int] = []
    defect = maps.labels == 1
    for t in sorted(set(maps.types[defect].tolist())):
        idx = np.flatnonzero(defect & (maps.types == t))
        chosen += sorted(idx.tolist(), key=lambda i: maps.paths[i])[:per_type]
    good = np.flatnonzero(~defect)
    chosen += sorted(good.tolist(), key=lambda i: maps.paths[i])[:per_type]
    return chosen


def _short(path: str) -> str:
    p = Path(path)
    return f"{p.parent.name}/{p.name}" if p.parent.name else p.name


class _Images:
    """Reads each test image once per report (all methods show the same test images)."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, tuple[int, int]], np.ndarray | None] = {}

    def get(self, path: str, size: tuple[int, int]) -> np.ndarray | None:
        key = (path, size)
        if key not in self._cache:
            try:
                self._cache[key] = read_image(path, size)
            except AnomalyForgeError:
                self._cache[key] = None
        return self._cache[key]


def heat_scale(m: dict) -> tuple[float, float, int | None] | None:
    """(lo, hi, n_images) of the method's recorded good-image heat scale, or None when absent."""
    sc = m.get("display_scale")
    lo, hi = _num(_get(sc, "lo")), _num(_get(sc, "hi"))
    if lo is None or hi is None or hi <= lo:
        return None
    n = _num(_get(sc, "n_images"))
    return lo, hi, None if n is None else int(n)


def sample_grid(maps: Maps, images: _Images, scale: tuple[float, float, int | None] | None
                ) -> tuple[list[dict], list[str]]:
    """Tiles (image with GT contour, heat overlay) for the fixed selection, plus notes.

    Heat maps are drawn on `scale` (the method's good-image scale from results.json): 0 = the
    median pixel score of held-out good training images, 1 = their 99.9th percentile. Without a
    recorded scale no heat map is drawn: a scale set on the test maps would hide how a good image
    compares with the good level."""
    notes: list[str] = []
    size = (maps.maps.shape[2], maps.maps.shape[1])  # (w, h) of the maps, as the model saw the images
    if scale is None:
        notes.append("No heat maps: results.json records no good-image heat scale for this method "
                     "(display_scale: older benchmarks lack it); rerun the benchmark to see them.")
    pred = _cls_by_index(maps)
    tiles = []
    missing = 0
    for i in select_samples(maps):
        img = images.get(str(maps.paths[i]), size)
        if img is None:
            missing += 1
            img = figures.placeholder(size[1], size[0])
        mask = maps.masks[i]
        heat = None if scale is None else (maps.maps[i] - scale[0]) / (scale[1] - scale[0])
        tiles.append({
            "type": "good" if maps.labels[i] == 0 else str(maps.types[i]),
            "good": bool(maps.labels[i] == 0),
            "name": _short(str(maps.paths[i])),
            "score": f"{float(maps.image_scores[i]):.3g}",
            "image": figures.png_data_uri(figures.image_with_contour(img, mask, TILE)),
            "heat": None if heat is None else figures.png_data_uri(figures.heat_overlay(img, heat, mask, TILE)),
            "pred": pred.get(i),
        })
    if missing:
        notes.append(f"{missing} test image(s) not found at their recorded path: shown as grey placeholders.")
    return tiles, notes


def _cls_by_index(maps: Maps) -> dict[int, dict]:
    """Predicted defect type per test-image index (cls arrays cover the defect images in order)."""
    if maps.cls_pred is None or maps.cls_true is None:
        return {}
    idx = np.flatnonzero(maps.labels == 1)
    if len(idx) != len(maps.cls_pred) or len(maps.cls_true) != len(maps.cls_pred):
        return {}
    return {int(i): {"label": str(p), "ok": str(p) == str(t)}
            for i, p, t in zip(idx, maps.cls_pred, maps.cls_true, strict=False)}


def per_type_rows(m: dict, split: dict) -> list[dict]:
    loc = _get(m, "localization", "per_type") or {}
    cls = _get(m, "classification", "per_type") or {}
    gen = _get(m, "generation", "types") or {}
    test = split.get("test_defects") or {}
    rows = []
    for t in sorted(set(loc) | set(cls)):
        d = loc.get(t) or {}
        g = gen.get(t) or {}
        rows.append({"type": t, "n": fmt_int(test.get(t)), "pixel_auroc": fmt_pct(d.get("pixel_auroc")),
                     "pixel_ap": fmt_pct(d.get("pixel_ap")), "image_auroc": fmt_pct(d.get("image_auroc")),
                     "accuracy": fmt_pct(cls.get(t)), "is": fmt_num(g.get("is")),
                     "ic_lpips": fmt_num(g.get("ic_lpips"))})
    return rows


def confusion(m: dict) -> dict | None:
    """Confusion matrix rows (true type) x columns (predicted type) with row-normalised shading."""
    c = m.get("classification")
    if not isinstance(c, dict):
        return None
    labels, mat = c.get("labels"), c.get("confusion")
    if not isinstance(labels, list) or not isinstance(mat, list) or len(mat) != len(labels):
        return None
    rows = []
    for i, (lab, row) in enumerate(zip(labels, mat, strict=False)):
        if not isinstance(row, list) or len(row) != len(labels):
            return None
        try:
            counts = [int(v) for v in row]
        except (TypeError, ValueError):
            return None
        total = sum(counts)
        rows.append({"label": lab, "total": total,
                     "cells": [{"n": v, "alpha": round(v / max(total, 1), 3), "diag": i == j}
                               for j, v in enumerate(counts)]})
    return {"labels": labels, "rows": rows}


def generated_pairs(bench_dir: Path, m: dict) -> tuple[list[dict], list[str]]:
    """A few generated pairs (image, mask overlay) from the method's run, per defect type."""
    run = m.get("run")
    if not run:
        if m.get("kind") == "baseline":
            return [], ["Baseline: trained without generated data, so there are no generated pairs."]
        return [], ["No generated run recorded for this method."]
    run_dir = bench_dir / str(run)
    records, note = load_manifest(run_dir)
    notes = [note] if note else []
    by_type: dict[str, list[dict]] = {}
    for r in records:
        by_type.setdefault(str(r.get("defect_type", "?")), []).append(r)
    chosen = [r for t in sorted(by_type) for r in by_type[t][:PAIRS_PER_TYPE]][:MAX_PAIRS]
    pairs, bad = [], 0
    for r in chosen:
        try:
            img = read_image(run_dir / str(r["image"]))
            mask = read_mask(run_dir / str(r["mask"]), size=(img.shape[1], img.shape[0])) > 0
        except AnomalyForgeError:
            bad += 1
            continue
        pairs.append({"type": str(r.get("defect_type", "?")), "name": Path(str(r["image"])).name,
                      "image": figures.png_data_uri(figures.letterbox(img, TILE)),
                      "overlay": figures.png_data_uri(figures.mask_overlay(img, mask, TILE)),
                      "coverage": f"{100.0 * mask.mean():.2f}%"})
    if bad:
        notes.append(f"{bad} generated pair(s) listed in {run_dir / 'manifest.jsonl'} could not be read.")
    if records and len(records) > len(chosen):
        notes.append(f"Showing {len(pairs)} of {len(records)} generated pairs (first {PAIRS_PER_TYPE} per type).")
    return pairs, notes


def method_section(bench_dir: Path, name: str, m: dict, split: dict, images: _Images,
                   curves: dict[str, dict]) -> dict:
    """Everything shown for one method; fills `curves[name]` for the comparison figure."""
    notes: list[str] = []
    status = m.get("status", "done")
    if status != "done":
        notes.append(f"Status is {status!r}: this method did not finish, its numbers are missing.")
    sec: dict[str, Any] = {"name": name, "kind": m.get("kind", DASH), "model": m.get("model", DASH),
                           "status": status, "baseline": m.get("kind") == "baseline", "anchor": _anchor(name)}
    t = m.get("timings") or {}
    sec["timings"] = [(k.replace("_s", ""), fmt_seconds(t.get(k))) for k in ("generate_s", "train_s", "eval_s",
                                                                            "total_s")]
    sec["n_pairs"] = fmt_int(m.get("n_pairs"))
    rel = _get(m, "artifacts", "maps")
    maps = None
    if rel:
        maps, note = load_maps(bench_dir / str(rel))
        if note:
            notes.append(f"No prediction maps: {note}.")
    else:
        notes.append("No prediction maps recorded for this method (artifacts.maps).")
    sec["tiles"], sec["curves"], sec["scale_bar"], sec["scale_text"] = [], None, None, None
    if maps is not None:
        scale = heat_scale(m)
        tiles, tnotes = sample_grid(maps, images, scale)
        sec["tiles"] = tiles
        sec["scale_bar"] = None if scale is None else figures.scale_bar(*scale)
        sec["scale_text"] = (None if scale is None else
                             f"0 = {scale[0]:.4g} (median), 1 = {scale[1]:.4g} (99.9th percentile) of the pixel "
                             f"scores of {scale[2] or 'the'} held-out good training images")
        notes += tnotes
        loc = m.get("localization") or {}
        try:
            pix = figures.roc_pr(maps.masks, maps.maps)
            img = figures.roc_pr(maps.labels == 1, maps.image_scores)
        except AnomalyForgeError as exc:  # NaN scores and the like: show the rest of the report
            pix = img = None
            notes.append(f"No curves: {exc}.")
        for c, level in ((pix, "pixel"), (img, "image")):
            if c is not None:
                c["label_roc"] = f"{name} (AUROC {fmt_pct(_get(loc, level, 'auroc'))})"
                c["label_pr"] = f"{name} (AP {fmt_pct(_get(loc, level, 'ap'))})"
        curves[name] = {"pixel": pix, "image": img}
        sec["curves"] = figures.curves_figure({name: curves[name]})
        sec["map_size"] = f"{maps.maps.shape[2]}×{maps.maps.shape[1]}"
        sec["n_test"] = int(len(maps.labels))
    sec["per_type"] = per_type_rows(m, split)
    sec["confusion"] = confusion(m)
    if m.get("classification") is None:
        notes.append("No defect-type classification for this method.")
    elif sec["confusion"] is None:
        notes.append("Classification results have no usable confusion matrix.")
    elif m["classification"].get("trained_on"):
        notes.append(f"The defect-type classifier was trained on {m['classification']['trained_on']}.")
    choice = (m.get("classification") or {}).get("choice") or {}
    if choice.get("accuracy"):
        acc = choice["accuracy"]
        looks = {"region": "the region the map marks",
                 "ensemble": "the whole image and the region the map marks, averaged"}.get(
            str(choice.get("chosen")), "the whole image")
        notes.append(f"It looks at {looks}: chosen on the {choice.get('k')} k-fold maps of the "
                     f"{choice.get('n_defects')} real few-shot training defects (fold accuracy: "
                     f"{_candidate_figures(acc)}).")
    tested = (m.get("classification") or {}).get("candidates_test") or {}
    if len(tested) > 1:
        notes.append(f"On the test split, after the choice (which never reads it): {_candidate_figures(tested)}.")
    sec["pairs"], pnotes = generated_pairs(bench_dir, m)
    notes += pnotes
    sec["notes"] = notes
    return sec


CANDIDATE_NAMES = {"image": "whole image", "region": "map region", "ensemble": "both averaged"}


def _candidate_figures(acc: dict) -> str:
    """"whole image 81.0, map region 85.7, ..." for the classifier candidates in `acc`, in their order."""
    return ", ".join(f"{label} {fmt_pct(acc[k])}" for k, label in CANDIDATE_NAMES.items() if k in acc)


def _anchor(name: str) -> str:
    return "m-" + "".join(ch if ch.isalnum() else "-" for ch in name)


# ---- assembly --------------------------------------------------------------------------------
def _environment() -> Environment:
    env = Environment(loader=PackageLoader("anomalyforge.report", "templates"),
                      autoescape=select_autoescape(["html", "j2"]), trim_blocks=True, lstrip_blocks=True)
    return env


def selection_table(res: dict) -> dict | None:
    """`--profile auto`: every candidate's fold scores and the choice (None for other profiles)."""
    sel = res.get("selection")
    if not isinstance(sel, dict) or not isinstance(sel.get("candidates"), list):
        return None
    choice = sel.get("choice") or {}
    rows = [{"generator": c.get("generator", DASH), "fusion": fmt_num(c.get("fusion")),
             "score": fmt_pct(c.get("score")),
             "folds": " · ".join(f"{fmt_pct(f.get('pixel_ap'))} / {fmt_pct(f.get('aupro'))} / "
                                 f"{fmt_pct(f.get('image_auroc'))}" for f in c.get("folds", [])),
             "chosen": c.get("generator") == choice.get("generator") and c.get("fusion") == choice.get("fusion")}
            for c in sel["candidates"]]
    cls = [{"share": fmt_num(r.get("cls_real_share")), "accuracy": fmt_pct(r.get("accuracy"))}
           for r in sel.get("classifier", [])]
    return {"rows": rows, "classifier": cls, "score": sel.get("score", DASH), "folds": sel.get("folds", DASH),
            "choice": choice, "seconds": fmt_seconds(sel.get("seconds"))}


def size_choice_note(res: dict) -> dict | None:
    """The input size a profile with a size ladder chose from the few-shot masks (None otherwise)."""
    c = res.get("size_choice")
    if not isinstance(c, dict) or "size" not in c:
        return None
    span = " · ".join(f"{_num(v) or 0:.1f} px at {k}" for k, v in (c.get("span_px") or {}).items())
    return {"size": c["size"], "ladder": ", ".join(str(s) for s in c.get("ladder", [])),
            "quantile": fmt_num(c.get("quantile")), "components": c.get("components", DASH),
            "min_px": c.get("min_px", DASH), "span": span or DASH}


def build_context(bench_dir: Path, progress: bool = False) -> dict:
    """Everything the template shows, computed from the benchmark folder."""
    bench_dir = Path(bench_dir)
    res = load_results(bench_dir)
    methods: dict[str, dict] = res["methods"]
    split = s if isinstance(s := res.get("split"), dict) else {}
    images = _Images()
    curves: dict[str, dict] = {}
    sections = [method_section(bench_dir, name, m, split, images, curves)
                for name, m in tqdm(methods.items(), desc="report", unit="method", disable=not progress)]
    comparison = figures.curves_figure(curves) if len(curves) > 1 else None
    real_is = next((_num(_get(m, "generation", "references_is")) for m in methods.values()
                    if _num(_get(m, "generation", "references_is")) is not None), None)

    return {
        "title": f"anomalyforge benchmark — {res.get('category', '?')}",
        "category": res.get("category", DASH), "data": res.get("data", DASH),
        "profile": res.get("profile", DASH), "seed": res.get("seed", DASH),
        "created": res.get("created", DASH), "version": res.get("version", DASH),
        "report_version": __version__, "tile": TILE, "per_type_n": SAMPLES_PER_TYPE,
        "split": split_rows(split), "has_split": bool(split),
        "table": results_table(methods), "published": published_table(res), "caveat": CAVEAT,
        "process_peak": process_peak(methods),
        "sections": sections, "comparison": comparison, "real_is": fmt_num(real_is) if real_is else None,
        "config_json": json.dumps(res.get("config", {}), indent=2, sort_keys=True, default=str),
        "selection": selection_table(res), "size_choice": size_choice_note(res),
    }


def write_report(bench_dir: Path, out: Path | None = None, *, progress: bool = False) -> Path:
    """Write the self-contained HTML report of a finished benchmark; returns its path.

    `out` defaults to `<bench_dir>/report.html`. The file is written to a temporary name and
    renamed, so a reader never sees half a report. Raises DataError when `bench_dir` has no
    results.json. `progress` shows a tqdm bar on stderr.
    """
    bench_dir = Path(bench_dir)
    out = Path(out) if out is not None else bench_dir / REPORT_FILE
    if out.is_dir():
        raise ConfigError(f"{out}: is a folder; give a file name for the report")
    ctx = build_context(bench_dir, progress=progress)
    text = _environment().get_template("report.html.j2").render(**ctx)
    try:
        write_text_atomic(out, text)
    except OSError as exc:
        raise DataError(out, f"cannot write the report ({exc.strerror or exc})") from None
    return out
