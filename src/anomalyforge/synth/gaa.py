"""GAA (Generate Aligned Anomaly): region-guided few-shot anomaly image–mask synthesis.

Built on the AnomalyDiffusion machinery (`anomalyforge.synth.anomalydiffusion`), with GAA's changes:

* Anomaly concepts: each defect type's few-shot defects are split by adaptive multi-round
  clustering (`anomalyforge.quality.cluster`) into sub-types ``<type>@<k>``; every sub-type gets
  its own feature-focused embedding e_f (8 tokens), all share the position encoder (4 tokens),
  trained jointly with the masked diffusion loss (AnomalyDiffusion's fit on the sub-typed data).
* Region-guided masks (no mask embedding is learned): for a local defect type, a few-shot mask of
  the sub-type is reshaped (`enhance_mask`) and placed on the object's foreground of the good
  image it is painted on — anywhere inside it or along its edge, each with probability 1/2
  (`place_mode` "random", as the paper: structural masks go randomly or along region edges);
  a combined defect type (`combined_types`, MVTec's "combined") gets 2–3 reshaped few-shot masks
  placed together without overlapping (`masks.placement.combine_masks`); for a logical defect type
  (one whose few-shot masks coincide with semantic regions, `masks.regions`), the mask is a whole
  region of that good image (a missing or changed component), chosen among the regions the type's few-shot masks cover.
* Generation asks for a defect type; each seed draws the sub-type with probability proportional
  to its cluster size, then blended latent sampling paints inside the mask only.
* Quality filtering (1000 generated, 500 kept in the paper): a generator returns one pair per
  seed, so the run machinery does it. `keep_ratio = 0.5` makes ``generate --method gaa --n N``
  generate 2N pairs per type and then run the ARS filter (`quality.filter.filter_run`), which
  scores every pair and marks the lower half rejected (``--keep-ratio`` changes the share).

State: AnomalyDiffusion's files (fitted on sub-types) plus ``gaa.json`` (clusters, logical types
and their regions).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import cast

import cv2
import numpy as np

from anomalyforge.data.fitdata import FitData
from anomalyforge.errors import ConfigError
from anomalyforge.formats.manifest import base_type
from anomalyforge.masks.enhance import enhance_mask
from anomalyforge.masks.foreground import foreground_mask
from anomalyforge.masks.placement import Mode, NoPlacement, combine_masks, place_mask
from anomalyforge.masks.regions import (
    BACKGROUND,
    RegionMap,
    RegionModel,
    logical_mask,
    propagate,
    reference_regions,
)
from anomalyforge.quality.cluster import ClusterConfig, apply_subtypes, cluster_fitdata
from anomalyforge.seeds import Stream, numpy_rng
from anomalyforge.synth.anomalydiffusion import PAPER, AnomalyDiffusion, AnomalyDiffusionConfig
from anomalyforge.synth.base import Pair, register
from anomalyforge.synth.state import write_state_meta

GAA_FILE = "gaa.json"


@dataclass
class GAAConfig(AnomalyDiffusionConfig):
    """AnomalyDiffusion's settings plus GAA's. `anomaly_tokens` (8) is e_f's length per sub-type,
    `spatial_tokens` (4) the shared position encoder's; `mask_source` is "region" (GAA)."""

    mask_source: str = "region"
    cluster: bool = True  # adaptive multi-round clustering into sub-types
    cluster_k_max: int = 6
    cluster_extractor: str = "cnn"  # "cnn" (EfficientNet-Lite0, offline) or "vit" (needs weights)
    cluster_extractor_weights: str | None = "imagenet"
    logical_types: str = "auto"  # "auto" | "none" | comma-separated defect types
    logical_iou: float = 0.35  # auto: median IoU of few-shot masks with their best region
    region_colours: int = 8  # masks.regions.RegionConfig.n_colours
    semantic_regions: str | None = None  # user regions <region_name>/<good_stem>.png (else automatic;
    # FitData.extra["semantic_regions"] is used when this is not set)
    place_rotation: float = 30.0  # local masks: rotation range when placed in the foreground
    place_scale: tuple[float, float] = (0.8, 1.25)
    place_mode: str = "random"  # local masks: "random" (inside or along the edge, 1/2 each; paper), "inside", "edge"
    combined_types: tuple[str, ...] = ("combined",)  # types whose masks combine several few-shot masks
    combine_max: int = 3  # a combined mask has 2..combine_max parts (pairwise IoU <= 0.1)


# GAA's published budget: 310 k steps (the rest as AnomalyDiffusion's paper preset; no mask embedding)
GAA_PRESETS = {"smoke": {}, "paper": {**{k: v for k, v in PAPER.items() if not k.startswith("mask_")},
                                      "fit_steps": 310_000}}


@register
class GAA(AnomalyDiffusion):
    """GAA: per-cluster feature embeddings, shared position encoder, region-guided masks."""

    name = "gaa"
    keep_ratio = 0.5  # the paper generates 1000 pairs per type and keeps the 500 best by ARS
    Config = GAAConfig
    PRESETS = GAA_PRESETS
    batch_size = 4

    def __init__(self, config: GAAConfig | None = None) -> None:
        super().__init__(config)
        self.clusters: dict[str, list[dict]] = {}
        self.logical: dict[str, list[str]] = {}  # logical type -> region names its masks cover
        self._region_model: RegionModel | None = None
        self._region_cache: dict[str, RegionMap] = {}
        self._fg_cache: dict[str, np.ndarray] = {}
        self.original: FitData | None = None

    def _check_config(self) -> None:
        c = self.config
        if c.place_mode not in ("random", "inside", "edge"):
            raise ConfigError(f"place_mode must be random, inside or edge, not {c.place_mode!r}")
        if c.mask_source != "region":
            raise ConfigError(f"gaa uses region-guided masks: mask_source must be 'region', not {c.mask_source!r}")
        ok = c.mask_source
        try:
            c.mask_source = "synthesis"  # let AnomalyDiffusion check the rest
            super()._check_config()
        finally:
            c.mask_source = ok

    # ---- regions -------------------------------------------------------------------------------
    def _regions(self, data: FitData) -> RegionModel:
        """The reference region model: the first user-annotated good image, else the first good image
        segmented automatically (deterministic, so `load` rebuilds the same regions)."""

        if self._region_model is not None:
            return self._region_model
        self._region_model = reference_regions(data, self.config.region_colours, self.config.semantic_regions,
                                               seed=self.config.seed)
        return self._region_model

    def _region_map(self, data: FitData, sample) -> RegionMap:

        key = str(sample.image)
        if key not in self._region_cache:
            self._region_cache[key] = propagate(self._regions(data), data.image(sample))
        return self._region_cache[key]

    def _best_regions(self, data: FitData, samples) -> tuple[float, list[str]]:
        """Median best IoU of the samples' masks with a non-background region, and those regions."""

        ious, names = [], []
        for s in samples:
            rm = self._region_map(data, s)
            m = data.mask(s) > 0
            best, name = 0.0, None
            for i, n in enumerate(rm.names):
                if n == BACKGROUND:
                    continue
                r = rm.labels == i
                union = np.logical_or(m, r).sum()
                iou = float(np.logical_and(m, r).sum() / union) if union else 0.0
                if iou > best:
                    best, name = iou, n
            ious.append(best)
            if name is not None and name not in names:
                names.append(name)
        return (float(np.median(ious)) if ious else 0.0), names

    def _decide_logical(self, data: FitData) -> dict[str, list[str]]:
        spec = self.config.logical_types.strip()
        if spec == "none":
            return {}
        if spec == "auto":
            chosen = []
            for t in data.defect_types:
                med, _ = self._best_regions(data, data.defects[t])
                if med >= self.config.logical_iou:
                    chosen.append(t)
        else:
            chosen = [t.strip() for t in spec.split(",") if t.strip()]
            unknown = [t for t in chosen if t not in data.defects]
            if unknown:
                raise ConfigError(f"logical_types names unknown defect type {unknown[0]!r}; "
                                  f"known: {', '.join(data.defect_types)}")
        return {t: self._best_regions(data, data.defects[t])[1] for t in chosen}

    # ---- fit / load ----------------------------------------------------------------------------
    def _subtyped(self, data: FitData) -> FitData:

        return apply_subtypes(data, self.clusters)

    def fit(self, data: FitData, state_dir: Path) -> None:
        """Cluster into sub-types, decide logical types, then fit e_f per sub-type + the shared encoder."""

        c = self.config
        self._check_config()
        if c.cluster:
            cfg = ClusterConfig(size=data.size, k_max=c.cluster_k_max, extractor=c.cluster_extractor,
                                extractor_weights=c.cluster_extractor_weights)
            self.clusters, _ = cluster_fitdata(data, c.seed, cfg, progress=c.progress)
        else:
            self.clusters = {t: [{"name": f"{t}@0", "members": [s.id for s in v]}] for t, v in data.defects.items()}
        self.original = data
        self.logical = self._decide_logical(data)
        super().fit(self._subtyped(data), state_dir)
        state_dir = Path(state_dir)
        write_state_meta(state_dir / GAA_FILE, {"clusters": self.clusters, "logical": self.logical,
                                                "config": asdict(c)})

    def load(self, data: FitData, state_dir: Path) -> None:
        """Restore clusters, logical types and the AnomalyDiffusion state fitted on the sub-types."""
        path = Path(state_dir) / GAA_FILE
        if not path.is_file():
            raise ConfigError(f"{path}: no gaa state here (run fit first)")
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
            self.clusters, self.logical = meta["clusters"], meta["logical"]
        except (OSError, json.JSONDecodeError, KeyError) as exc:
            raise ConfigError(f"{path}: unreadable gaa state ({exc.__class__.__name__})") from None
        self.original = data
        super().load(self._subtyped(data), state_dir)

    # ---- masks ---------------------------------------------------------------------------------
    def _good_index(self, seed: int) -> int:
        # the same draw AnomalyDiffusion.generate uses to pick the good image of a seed
        assert self.data is not None  # only called from generate(), which checked it
        return int(numpy_rng(seed, Stream.GOOD_IMAGE).integers(len(self.data.good)))

    def _foreground(self, sample) -> np.ndarray:

        key = str(sample.image)
        if key not in self._fg_cache:
            assert self.data is not None  # only called from generate(), which checked it
            self._fg_cache[key] = foreground_mask(self.data.image(sample))
        return self._fg_cache[key]

    def _masks_for(self, defect_type: str, seeds: Sequence[int]) -> tuple[list[np.ndarray], list[str]]:
        """Region-guided masks at `resolution`: whole regions for logical types, few-shot masks
        reshaped and placed inside the foreground for local ones."""

        c, data = self.config, self.data
        assert data is not None  # only called from generate(), which checked self.data
        base = base_type(defect_type)
        few = self.few_shot_masks[defect_type]
        mean_area = float(np.mean([(m > 0).sum() for m in few]))
        out, how = [], []
        for s in seeds:
            rng = numpy_rng(s, Stream.MASK)
            good = data.good[self._good_index(s)]
            if base in self.logical:
                rm = self._region_map(self.original or data, good)
                names = [n for n in self.logical[base] if n in rm.names and (rm.labels == rm.names.index(n)).any()]
                region = names[int(rng.integers(len(names)))] if names else None
                _, m = logical_mask(rm, rng, region=region)
                how.append("region")
            else:
                def reshaped(rng: np.random.Generator = rng) -> np.ndarray:
                    src = few[int(rng.integers(len(few)))]
                    new = enhance_mask(src, rng, mean_area=mean_area)
                    return new if new.any() else src

                new = reshaped()
                fg = cv2.resize(self._foreground(good), (self.res, self.res), interpolation=cv2.INTER_NEAREST)
                mode = cast(Mode, c.place_mode if c.place_mode != "random"
                            else ("inside", "edge")[int(rng.integers(2))])
                kw = {"rotation": c.place_rotation, "scale": tuple(c.place_scale), "flip": True}
                try:
                    if base in tuple(c.combined_types):
                        parts = [new] + [reshaped() for _ in range(int(rng.integers(1, max(2, c.combine_max))))]
                        m, _ = combine_masks(parts, fg, rng, mode, max_iou=0.1, **kw)
                        how.append(f"combined_{mode}")
                    else:
                        m, _, _ = place_mask(new, fg, rng, mode, **kw)
                        how.append("foreground" if mode == "inside" else "edge")
                except NoPlacement:
                    m = new
                    how.append("in_place")
                if not m.any():
                    m, how[-1] = new, "in_place"
            m = cv2.resize(m, (self.res, self.res), interpolation=cv2.INTER_NEAREST)
            out.append(np.where(m > 0, 255, 0).astype(np.uint8))
        return out, how

    # ---- generate ------------------------------------------------------------------------------
    def subtypes(self, defect_type: str) -> list[tuple[str, int]]:
        """(sub-type, number of few-shot members) of a fitted defect type."""
        return [(cl["name"], len(cl["members"])) for cl in self.clusters.get(defect_type, [])]

    def generate(self, defect_type: str, seeds: Sequence[int]) -> list[Pair]:
        """One pair per seed. A defect type draws its sub-type per seed (proportional to cluster
        size); a sub-type name (``type@k``) is generated directly."""
        if defect_type in self.types or not seeds:
            pairs = super().generate(defect_type, seeds)
            for p in pairs:
                p.params["subtype"] = defect_type
            return pairs
        subs = self.subtypes(defect_type)
        if not subs:
            raise ConfigError(f"defect type {defect_type!r} was not fitted; fitted: "
                              f"{', '.join(sorted(self.clusters))}")
        weights = np.array([n for _, n in subs], float)
        pick = [subs[int(numpy_rng(s, Stream.SUBTYPE).choice(len(subs), p=weights / weights.sum()))][0]
                for s in seeds]
        out: list[Pair | None] = [None] * len(seeds)
        for sub in dict.fromkeys(pick):
            idx = [i for i, p in enumerate(pick) if p == sub]
            for i, pair in zip(idx, super().generate(sub, [seeds[i] for i in idx]), strict=False):
                pair.params["subtype"] = sub
                out[i] = pair
        return [p for p in out if p is not None]
