"""Adaptive multi-round anomaly clustering (GAA): split each defect type into anomaly concepts.

A defect type such as "contamination" often mixes visually different concepts (dark specks,
bright streaks ...). A generator that learns one embedding per type blurs them; GAA clusters the
few-shot defects and fits one embedding per cluster ("sub-type", named ``<type>@<k>``).

Per defect type:
1. describe each few-shot defect region (`features.region_features`: masked deep features,
   LAB statistics, LBP texture);
2. KMeans (scikit-learn, seeded, `n_init` restarts) for every k in 2..min(k_max, n // m); k is the
   argmax of ``w_ch * CH_norm - w_db * DB_norm`` where CH (Calinski–Harabasz, higher = better) and
   DB (Davies–Bouldin, lower = better) are min–max normalised over the candidate k's. Equal
   weights (0.5, 0.5) treat compactness/separation (CH) and cluster overlap (DB) as equally
   important, as in the paper. Partitions with a cluster smaller than m = `min_cluster_size` (2)
   are not candidates: with few-shot data, k near n makes singletons whose CH/DB are trivially
   perfect, and a one-image sub-type gives a generator nothing to generalise from;
3. a cluster with more than N / (log(0.1 N) + 0.4) members (N = samples of the type) is dense and
   is clustered again by step 2, round after round, until none is dense or `max_rounds` is reached.
With fewer than `min_samples` (4) regions, or when no candidate partition is valid, the type stays
whole (the log says why).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score
from tqdm import tqdm

from anomalyforge.atomic import check_output_dir, write_json_atomic, write_png_atomic
from anomalyforge.data import few_shot_split, load_dataset
from anomalyforge.data.fitdata import FitData
from anomalyforge.data.types import FewShotSplit, Sample
from anomalyforge.errors import ConfigError, DataError
from anomalyforge.formats.manifest import SUBTYPE_SEP, base_type, subtype_name  # noqa: F401 (re-exported)
from anomalyforge.quality.features import FeatureWeights, MapExtractor, make_extractor, region_features


@dataclass
class ClusterConfig:
    """Clustering settings (saved in clusters.json). See the module docstring for the method."""

    size: int = 256
    extractor: str = "cnn"  # "cnn" (EfficientNet-Lite0, offline) or "vit" (needs extractor_weights)
    extractor_weights: str | None = "imagenet"
    weights: FeatureWeights = field(default_factory=FeatureWeights)
    k_max: int = 6
    w_ch: float = 0.5
    w_db: float = 0.5
    max_rounds: int = 3
    n_init: int = 10
    min_samples: int = 4
    min_cluster_size: int = 2


# ---- the algorithm -----------------------------------------------------------------------------
def dense_threshold(n: int) -> float:
    """Cluster size above which a cluster is dense: N / (log(0.1 N) + 0.4); inf when undefined."""
    denom = math.log(0.1 * n) + 0.4 if n > 0 else 0.0
    return n / denom if denom > 0 else math.inf


def choose_k(x: np.ndarray, seed: int, config: ClusterConfig) -> tuple[np.ndarray, list[dict]]:
    """KMeans over k = 2..min(k_max, n // min_cluster_size); the best labels and the per-k score table.

    Partitions with a cluster below `min_cluster_size` are skipped; all-zero labels when none is left.
    """
    n = len(x)
    m = max(1, config.min_cluster_size)
    ks = list(range(2, min(config.k_max, n // m, n - 1) + 1))
    if not ks:
        return np.zeros(n, np.int64), []
    runs = []
    for k in ks:
        labels = KMeans(n_clusters=k, n_init=config.n_init, random_state=seed).fit_predict(x)
        sizes = np.bincount(labels, minlength=k)
        if (sizes < m).any() or (sizes > 0).sum() < 2:  # singletons, or duplicates made k unreachable
            continue
        runs.append((k, labels, calinski_harabasz_score(x, labels), davies_bouldin_score(x, labels)))
    if not runs:
        return np.zeros(n, np.int64), []
    ch = np.array([r[2] for r in runs])
    db = np.array([r[3] for r in runs])

    def norm(v: np.ndarray) -> np.ndarray:
        span = v.max() - v.min()
        return (v - v.min()) / span if span > 1e-12 else np.zeros_like(v)

    score = config.w_ch * norm(ch) - config.w_db * norm(db)
    best = int(np.argmax(score))
    table = [{"k": r[0], "calinski_harabasz": float(r[2]), "davies_bouldin": float(r[3]), "score": float(s)}
             for r, s in zip(runs, score, strict=False)]
    return runs[best][1], table


def adaptive_cluster(x: np.ndarray, seed: int = 0, config: ClusterConfig | None = None
                     ) -> tuple[np.ndarray, list[dict]]:
    """Multi-round clustering of the rows of `x`: (labels 0..K-1, log of every round's choice)."""
    cfg = config or ClusterConfig()
    n = len(x)
    if n < cfg.min_samples:
        return np.zeros(n, np.int64), [{"round": 0, "note": f"{n} samples < {cfg.min_samples}: kept whole"}]
    limit = dense_threshold(n)
    labels, table = choose_k(x, seed, cfg)
    log = [{"round": 1, "members": n, "scores": table}]
    if not table:
        log[0]["note"] = f"no partition into clusters of >= {cfg.min_cluster_size} members: kept whole"

    for rnd in range(2, cfg.max_rounds + 1):
        sizes = np.bincount(labels)
        dense = [c for c, s in enumerate(sizes) if s > limit and s >= cfg.min_samples]
        if not dense:
            break
        for c in dense:
            idx = np.flatnonzero(labels == c)
            sub, table = choose_k(x[idx], seed, cfg)
            if len(np.unique(sub)) > 1:
                labels[idx[sub > 0]] = labels.max() + sub[sub > 0]
            log.append({"round": rnd, "split_cluster_of": int(len(idx)), "scores": table})
    # relabel by first appearance so labels are stable and contiguous
    _, first = np.unique(labels, return_index=True)
    order = np.argsort(np.argsort(first))
    return order[np.searchsorted(np.unique(labels), labels)], log


# ---- on few-shot data --------------------------------------------------------------------------
def _as_fitdata(data: FitData | FewShotSplit, size: int) -> FitData:
    if isinstance(data, FitData):
        return data
    if isinstance(data, FewShotSplit):
        return FitData(category=data.category, size=size, defects=dict(data.train_defects),
                       good=list(data.train_good))
    raise ConfigError(f"expected FitData or FewShotSplit, got {type(data).__name__}")


def cluster_fitdata(data: FitData, seed: int = 0, config: ClusterConfig | None = None,
                    extractor: MapExtractor | None = None, progress: bool = True) -> tuple[dict, dict]:
    """Cluster every defect type of `data`.

    Returns (clusters, details): clusters = {type: [{"name": "<type>@<k>", "members": [ids]}]},
    details = {type: {"notes": ..., "log": ...}}.
    """

    cfg = config or ClusterConfig()
    clusters: dict[str, list[dict]] = {}
    details: dict[str, dict] = {}
    for dtype in tqdm(data.defect_types, desc="clustering", disable=not progress, file=None):
        samples = data.defects[dtype]
        ids = [s.id for s in samples]
        if len(set(ids)) != len(ids):
            raise ConfigError(f"defect type {dtype!r}: sample ids are not unique")
        if len(samples) < cfg.min_samples:
            labels = np.zeros(len(samples), np.int64)
            log = [{"round": 0, "note": f"{len(samples)} samples < {cfg.min_samples}: kept whole"}]
        else:
            if extractor is None and cfg.weights.deep > 0:  # built only when some type is clustered
                extractor = make_extractor(cfg.extractor, cfg.extractor_weights)
            feats = region_features([data.image(s) for s in samples], [data.mask(s) for s in samples],
                                    extractor, cfg.weights)
            labels, log = adaptive_cluster(feats, seed, cfg)
        clusters[dtype] = [
            {"name": subtype_name(dtype, k), "members": [i for i, lab in zip(ids, labels, strict=True) if lab == k]}
            for k in range(int(labels.max()) + 1)]
        details[dtype] = {"log": log}
    return clusters, details


def apply_subtypes(data: FitData | FewShotSplit, clusters: dict[str, list[dict]], size: int = 256) -> FitData:
    """A FitData whose defect types are the clusters' sub-types ``<type>@<k>``.

    Types absent from `clusters` keep their name. Every member id must exist in its type, and every
    sample must be in exactly one cluster, else ConfigError (stale clusters.json).
    """
    fd = _as_fitdata(data, size)
    defects: dict[str, list[Sample]] = {}
    for dtype, samples in fd.defects.items():
        if dtype not in clusters:
            defects[dtype] = list(samples)
            continue
        by_id = {s.id: s for s in samples}
        seen: set[str] = set()
        for c in clusters[dtype]:
            missing = [m for m in c["members"] if m not in by_id]
            if missing:
                raise ConfigError(f"cluster {c['name']}: sample {missing[0]!r} is not a training defect of "
                                  f"{dtype!r} (clusters made from other data?)")
            seen.update(c["members"])
            defects[c["name"]] = [by_id[m] for m in c["members"]]
        left = sorted(set(by_id) - seen)
        if left:
            raise ConfigError(f"defect type {dtype!r}: sample {left[0]!r} is in no cluster "
                              "(clusters made from other data?)")
    return dataclasses.replace(fd, defects=defects, extra=dict(fd.extra))


# ---- outputs -----------------------------------------------------------------------------------
def _tile(image: np.ndarray, mask: np.ndarray, tile: int = 128) -> np.ndarray:
    """Crop around the mask (padded to a square) with the mask outline drawn in red."""
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    if len(ys) == 0:
        y0, y1, x0, x1 = 0, h, 0, w
    else:
        cy, cx = (ys.min() + ys.max()) / 2, (xs.min() + xs.max()) / 2
        half = max(ys.max() - ys.min(), xs.max() - xs.min(), 24) * 0.75
        y0, y1 = int(max(0, cy - half)), int(min(h, cy + half + 1))
        x0, x1 = int(max(0, cx - half)), int(min(w, cx + half + 1))
    out = image.copy()
    contours, _ = cv2.findContours((mask > 0).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(out, contours, -1, (255, 0, 0), 1)
    return cv2.resize(out[y0:y1, x0:x1], (tile, tile), interpolation=cv2.INTER_AREA)


def contact_sheet(data: FitData, samples: Sequence[Sample], columns: int = 6, tile: int = 128) -> np.ndarray:
    """Tiles of each sample's defect crop with its mask outline, `columns` per row."""
    tiles = [_tile(data.image(s), data.mask(s), tile) for s in samples]
    for t, s in zip(tiles, samples, strict=False):
        cv2.putText(t, s.id[:14], (2, tile - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 0), 1)
    rows = []
    for i in range(0, len(tiles), columns):
        row = tiles[i:i + columns]
        row += [np.zeros_like(tiles[0])] * (columns - len(row)) if len(tiles) > columns else []
        rows.append(np.hstack(row))
    return np.vstack(rows)




def write_clusters(out: Path, data: FitData, clusters: dict, details: dict, config: ClusterConfig,
                   seed: int, source: dict | None = None) -> Path:
    """clusters.json (config, seed, clusters, per-round scores) and one contact sheet per cluster."""
    out = Path(out)
    subtyped = apply_subtypes(data, clusters)
    for name, samples in subtyped.defects.items():
        write_png_atomic(out / "sheets" / f"{name}.png", contact_sheet(subtyped, samples))
    doc = {"category": data.category, "seed": seed, "config": asdict(config), "source": source or {},
           "clusters": clusters, "details": details}
    path = out / "clusters.json"
    write_json_atomic(path, doc)
    return path


def read_clusters(path: str | Path) -> dict[str, list[dict]]:
    """The clusters of a clusters.json file (or of the clusters.json inside a folder)."""

    path = Path(path)
    if path.is_dir():
        path = path / "clusters.json"
    try:
        doc = json.loads(path.read_text())
        return doc["clusters"]
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DataError(path, f"not a clusters.json file ({exc.__class__.__name__})") from None


def cluster_category(data: str | Path | FitData | FewShotSplit, category: str | None = None,
                     data_format: str | None = None, size: int = 256, seed: int = 0, out: str | Path | None = None,
                     config: ClusterConfig | None = None, extractor: MapExtractor | None = None,
                     ratio: float = 1 / 3, progress: bool = True, notes: list[str] | None = None
                     ) -> dict[str, list[dict]]:
    """Cluster the few-shot training defects of one category into anomaly concepts.

    `data` is a dataset path (loaded with `anomalyforge.data.load_dataset` and split with
    `few_shot_split(ratio)`), a FewShotSplit or a FitData. With `out`, writes clusters.json and a
    contact sheet per cluster (sheets/<type>@<k>.png). Returns {type: [{"name", "members"}]}.
    `notes`, when given, receives one line per type kept whole and why (too few samples ...).
    """
    cfg = config or ClusterConfig(size=size)
    source: dict[str, Any] = {}
    if out is not None:  # never inside the dataset, never below a file
        check_output_dir(out, [data] if isinstance(data, (str, Path)) else [])
    if isinstance(data, (str, Path)):

        ds = load_dataset(Path(data), category=category, data_format=data_format)
        split = few_shot_split(ds, ratio=ratio)
        fd = FitData(category=split.category, size=cfg.size, defects=dict(split.train_defects),
                     good=list(split.train_good))
        source = {"data": str(Path(data).resolve()), "category": ds.category, "format": ds.format, "ratio": ratio}
    else:
        fd = _as_fitdata(data, cfg.size)
    if not fd.defects:
        raise ConfigError(f"category {fd.category!r}: no few-shot defects with masks to cluster")
    clusters, details = cluster_fitdata(fd, seed, cfg, extractor, progress)
    if notes is not None:
        notes.extend(f"{t}: {r['note']}" for t, d in details.items() for r in d["log"] if "note" in r)
    if out is not None:
        write_clusters(Path(out), fd, clusters, details, cfg, seed, source)
    return clusters


def plan_subtypes(data: FitData, mode: str, run_dir: str | Path | None = None, seed: int = 0,
                  config: ClusterConfig | None = None, progress: bool = True) -> tuple[FitData, dict]:
    """Hook for the run machinery (`generate --subtypes auto|CLUSTERS.json`): the FitData split into
    sub-types ``<type>@<k>`` and the clusters used. Writes nothing (see `save_subtypes`).

    "auto" clusters `data` (or reuses `run_dir/clusters/clusters.json` of a resumed run, so its
    sub-types and files stay identical); any other value is read as a clusters.json path.
    """
    if mode == "auto":
        existing = Path(run_dir) / "clusters" / "clusters.json" if run_dir is not None else None
        if existing is not None and existing.is_file():
            clusters = read_clusters(existing)
        else:
            clusters, _ = cluster_fitdata(data, seed, config or ClusterConfig(size=data.size), None, progress)
    else:
        clusters = read_clusters(mode)
    return apply_subtypes(data, clusters), clusters


def save_subtypes(run_dir: str | Path, data: FitData, clusters: dict, seed: int = 0) -> None:
    """Write `run_dir/clusters/` (clusters.json + contact sheets) unless a resumed run has it."""
    out = Path(run_dir) / "clusters"
    if not (out / "clusters.json").is_file():
        write_clusters(out, data, clusters, {}, ClusterConfig(size=data.size), seed)


def format_clusters(clusters: dict[str, list[dict]]) -> str:
    """Human-readable listing: one line per cluster with its members."""
    lines = []
    for dtype, cs in clusters.items():
        lines.append(f"{dtype}: {len(cs)} cluster(s)")
        for c in cs:
            lines.append(f"  {c['name']} ({len(c['members'])}): {', '.join(c['members'])}")
    return "\n".join(lines)
