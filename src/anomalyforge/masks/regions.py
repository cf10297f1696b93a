"""Semantic regions of good images (a bottle's cap, liquid, labels ...) for logical anomalies.

Logical anomalies (a missing, swapped or misplaced component) are not local texture damage: their
mask is a whole component. This module finds components without any pretrained model:

1. a reference good image is segmented automatically by colour clustering (seeded KMeans on LAB
   colour plus pixel position), and each colour cluster is split into its connected components;
   tiny components are absorbed by their neighbours. Users may instead annotate one or more good
   images themselves (a folder ``<region_name>/<image_stem>.png``).
2. the reference region map is propagated to every other good image by registering the reference
   onto it (ECC affine by default, or ORB features + RANSAC homography) and warping the map;
   when registration fails, each pixel gets the reference cluster whose (colour, position) centre
   is nearest and components are matched to the reference regions by overlap.

`logical_mask` takes one whole region as a defect mask; `combine_region_masks` joins several
masks (of regions or of local defects) while refusing pairs that overlap beyond a threshold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
from scipy import ndimage
from sklearn.cluster import KMeans

from anomalyforge.data.fitdata import FitData
from anomalyforge.data.io import read_mask
from anomalyforge.errors import ConfigError, DataError

BACKGROUND = "background"


@dataclass
class RegionConfig:
    """Segmentation and propagation settings; defaults hold for any object or texture category.

    n_colours: colour clusters on the reference (regions are their connected components).
    position_weight: weight of normalised (x, y) against LAB/100 colour; keeps clusters compact.
    work_size: long side (pixels) the clustering and registration run at.
    min_region: components smaller than this fraction of the image are absorbed by neighbours.
    smooth: size (pixels at work_size) of the majority filter that cleans the cluster map.
    registration: "ecc" (affine, robust for aligned product photos), "orb" (homography, for
    larger pose changes) or "none" (always use colour-centre assignment).
    min_correlation: registrations with a lower normalised correlation fall back to the centres.
    merge_colour: clusters whose mean colours are closer than this (CIELAB distance / 100) are
    one colour split only by position (e.g. a uniform background) and are merged.
    """

    n_colours: int = 8
    position_weight: float = 0.25
    work_size: int = 128
    min_region: float = 0.004
    smooth: int = 5
    registration: str = "ecc"
    min_correlation: float = 0.6
    n_init: int = 4
    merge_colour: float = 0.08


@dataclass
class RegionMap:
    """Regions of one image: `labels` (H, W) int32 indexes `names`; `method` tells how it was made
    ("reference", "user", "ecc", "orb" or "centres") and `score` the registration correlation."""

    labels: np.ndarray
    names: list[str]
    method: str
    score: float = 1.0

    def mask(self, region: str | int) -> np.ndarray:
        """uint8 {0, 255} mask of one region, by name or index."""
        idx = self.names.index(region) if isinstance(region, str) else int(region)
        return np.where(self.labels == idx, 255, 0).astype(np.uint8)

    def areas(self) -> dict[str, float]:
        """Fraction of the image each region covers."""
        counts = np.bincount(self.labels.ravel(), minlength=len(self.names))
        return {n: float(c) / self.labels.size for n, c in zip(self.names, counts, strict=False)}


@dataclass
class RegionModel:
    """A reference image's regions plus what propagation needs (colour/position centres)."""

    reference: np.ndarray  # (h, w, 3) uint8 at work size
    labels: np.ndarray  # (h, w) int32 region index at work size
    names: list[str]
    centres: np.ndarray  # (K, 5) LAB/100 + weighted position, one per colour cluster
    region_cluster: list[int]  # colour cluster of each region
    config: RegionConfig = field(default_factory=RegionConfig)
    source: str = "auto"
    cluster_group: np.ndarray | None = None  # colour cluster -> merged group (None = identity)


# ---- feature helpers ---------------------------------------------------------------------------
def _work_shape(shape: tuple[int, ...], work_size: int) -> tuple[int, int]:
    h, w = shape[:2]
    s = work_size / max(h, w)
    return max(8, round(w * s)), max(8, round(h * s))  # cv2 (width, height)


def _to_work(image: np.ndarray, cfg: RegionConfig) -> np.ndarray:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ConfigError(f"regions need uint8 RGB (H, W, 3) images, got {image.dtype} {image.shape}")
    return cv2.resize(image, _work_shape(image.shape, cfg.work_size), interpolation=cv2.INTER_AREA)


def _pixel_features(work: np.ndarray, cfg: RegionConfig) -> np.ndarray:
    """(h*w, 5): LAB / 100 and position in [0, 1] times `position_weight`."""
    lab = cv2.cvtColor(work.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB) / 100.0
    h, w = work.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    pos = np.stack([xx / max(w - 1, 1), yy / max(h - 1, 1)], axis=-1) * cfg.position_weight
    return np.concatenate([lab, pos], axis=-1).reshape(-1, 5)


def _majority(labels: np.ndarray, n: int, size: int) -> np.ndarray:
    """Majority (mode) filter of a label map: removes salt-and-pepper cluster noise."""
    if size <= 1:
        return labels
    votes = np.stack([cv2.blur((labels == k).astype(np.float32), (size, size)) for k in range(n)])
    return votes.argmax(axis=0).astype(np.int32)


def _merge_similar(colours: np.ndarray, threshold: float) -> np.ndarray:
    """Map each cluster to the smallest index of its group of near-identical colours (union-find)."""
    parent = list(range(len(colours)))

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    for i in range(len(colours)):
        for j in range(i + 1, len(colours)):
            if np.linalg.norm(colours[i] - colours[j]) < threshold:
                a, b = root(i), root(j)
                parent[max(a, b)] = min(a, b)
    return np.array([root(i) for i in range(len(colours))], np.int32)


def _components(clusters: np.ndarray, min_pixels: int) -> tuple[np.ndarray, list[int]]:
    """Split a cluster map into connected components; tiny ones take their nearest big neighbour."""
    regions = np.full(clusters.shape, -1, np.int32)
    region_cluster: list[int] = []
    for k in np.unique(clusters):
        n, comp = cv2.connectedComponents((clusters == k).astype(np.uint8), connectivity=4)
        for c in range(1, n):
            sel = comp == c
            if sel.sum() >= min_pixels:
                regions[sel] = len(region_cluster)
                region_cluster.append(int(k))
    if not region_cluster:  # nothing big enough: the whole image is one region
        return np.zeros(clusters.shape, np.int32), [int(np.bincount(clusters.ravel()).argmax())]
    missing = regions < 0
    if missing.any():
        _, idx = ndimage.distance_transform_edt(missing, return_indices=True)
        regions = regions[idx[0], idx[1]]
    return regions, region_cluster


def _order_and_name(regions: np.ndarray, region_cluster: list[int]) -> tuple[np.ndarray, list[int], list[str]]:
    """Order regions top-to-bottom, left-to-right; the one touching the border most is background."""
    n = len(region_cluster)
    h, w = regions.shape
    border = np.concatenate([regions[0], regions[-1], regions[:, 0], regions[:, -1]])
    border_counts = np.bincount(border, minlength=n)
    bg = int(border_counts.argmax()) if border_counts.max() > 0.5 * border.size else -1
    centroids = ndimage.center_of_mass(np.ones_like(regions), regions, range(n))
    order = sorted(range(n), key=lambda r: (r != bg, round(centroids[r][0] / h * 8), centroids[r][1]))
    remap = np.empty(n, np.int32)
    remap[order] = np.arange(n)
    names = [BACKGROUND if r == bg else f"region_{i:02d}" for i, r in enumerate(order)]
    return remap[regions], [region_cluster[r] for r in order], names


# ---- reference segmentation --------------------------------------------------------------------
def segment_reference(image: np.ndarray, config: RegionConfig | None = None, seed: int = 0) -> RegionModel:
    """Segment a good image into regions by seeded KMeans on LAB colour + position (no pretrained model)."""
    cfg = config or RegionConfig()
    if cfg.n_colours < 2:
        raise ConfigError(f"n_colours must be >= 2, got {cfg.n_colours}")
    work = _to_work(image, cfg)
    feats = _pixel_features(work, cfg)
    km = KMeans(n_clusters=cfg.n_colours, n_init=cfg.n_init, random_state=seed).fit(feats)
    merged = _merge_similar(km.cluster_centers_[:, :3], cfg.merge_colour)
    clusters = _majority(merged[km.labels_].reshape(work.shape[:2]).astype(np.int32), cfg.n_colours, cfg.smooth)
    regions, region_cluster = _components(clusters, int(cfg.min_region * clusters.size))
    regions, region_cluster, names = _order_and_name(regions, region_cluster)
    return RegionModel(work, regions, names, km.cluster_centers_.astype(np.float32), region_cluster, cfg,
                       cluster_group=merged)


def model_from_masks(image: np.ndarray, masks: dict[str, np.ndarray],
                     config: RegionConfig | None = None) -> RegionModel:
    """A RegionModel from user-annotated region masks of one good image (unlabelled = background)."""
    cfg = config or RegionConfig()
    if not masks:
        raise ConfigError("no region masks given")
    work = _to_work(image, cfg)
    wh = (work.shape[1], work.shape[0])
    names = [BACKGROUND] + sorted(n for n in masks if n != BACKGROUND)
    labels = np.zeros(work.shape[:2], np.int32)
    for i, name in enumerate(names[1:], start=1):
        m = masks[name]
        if m.shape[:2] != image.shape[:2]:
            raise ConfigError(f"region {name!r}: mask {m.shape[1]}x{m.shape[0]} does not match its image "
                              f"{image.shape[1]}x{image.shape[0]}")
        labels[cv2.resize(m, wh, interpolation=cv2.INTER_NEAREST) > 0] = i
    feats = _pixel_features(work, cfg).reshape(*labels.shape, 5)
    centres = np.stack([feats[labels == i].mean(axis=0) if (labels == i).any() else np.full(5, 1e3, np.float32)
                        for i in range(len(names))]).astype(np.float32)
    return RegionModel(work, labels, names, centres, list(range(len(names))), cfg, source="user")


# ---- propagation -------------------------------------------------------------------------------
def _grey(work: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(work, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0


def _correlation(a: np.ndarray, b: np.ndarray, valid: np.ndarray) -> float:
    a, b = a[valid], b[valid]
    if a.size < 16 or a.std() < 1e-6 or b.std() < 1e-6:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def _register_ecc(ref: np.ndarray, tgt: np.ndarray) -> np.ndarray | None:
    """2x3 affine warp with tgt(x) ≈ ref(W x) (use with WARP_INVERSE_MAP), or None."""
    warp = np.eye(2, 3, dtype=np.float32)
    crit = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 100, 1e-5)
    try:
        # the stub's 7-argument overload has no inputMask=None, which OpenCV accepts
        _, warp = cv2.findTransformECC(_grey(tgt), _grey(ref), warp, cv2.MOTION_AFFINE, crit, None, 5)  # type: ignore[call-overload]
    except cv2.error:
        return None
    return warp


def _register_orb(ref: np.ndarray, tgt: np.ndarray) -> np.ndarray | None:
    """3x3 homography mapping reference pixels to target pixels, or None."""
    orb = cv2.ORB_create(nfeatures=1000)  # type: ignore[attr-defined]  # the stubs list only cv2.ORB.create
    g1 = cv2.cvtColor(ref, cv2.COLOR_RGB2GRAY)
    g2 = cv2.cvtColor(tgt, cv2.COLOR_RGB2GRAY)
    k1, d1 = orb.detectAndCompute(g1, None)
    k2, d2 = orb.detectAndCompute(g2, None)
    if d1 is None or d2 is None or len(k1) < 8 or len(k2) < 8:
        return None
    matches = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True).match(d1, d2)
    if len(matches) < 8:
        return None
    src = np.array([k1[m.queryIdx].pt for m in matches], np.float32).reshape(-1, 1, 2)
    dst = np.array([k2[m.trainIdx].pt for m in matches], np.float32).reshape(-1, 1, 2)
    hom, inliers = cv2.findHomography(src, dst, cv2.RANSAC, 3.0)
    if hom is None or inliers is None or int(inliers.sum()) < 8:
        return None
    return hom


def _by_centres(model: RegionModel, work: np.ndarray) -> np.ndarray:
    """Fallback: nearest reference colour/position centre per pixel, components matched by overlap."""
    cfg = model.config
    feats = _pixel_features(work, cfg)
    d = ((feats[:, None, :] - model.centres[None]) ** 2).sum(-1)
    nearest = d.argmin(1)
    if model.cluster_group is not None:
        nearest = model.cluster_group[nearest]
    clusters = _majority(nearest.reshape(work.shape[:2]).astype(np.int32), len(model.centres), cfg.smooth)
    comps, comp_cluster = _components(clusters, int(cfg.min_region * clusters.size))
    ref = model.labels
    if ref.shape != comps.shape:
        ref = cv2.resize(ref.astype(np.float32), (comps.shape[1], comps.shape[0]),
                         interpolation=cv2.INTER_NEAREST).astype(np.int32)
    out = np.zeros_like(comps)
    for c, k in enumerate(comp_cluster):
        sel = comps == c
        same = [r for r, rk in enumerate(model.region_cluster) if rk == k]
        if not same:  # user masks: clusters are the regions themselves
            out[sel] = k
            continue
        overlap = [np.count_nonzero(ref[sel] == r) for r in same]
        if max(overlap) > 0:
            out[sel] = same[int(np.argmax(overlap))]
        else:  # no overlap: the same-coloured reference region of largest area
            out[sel] = max(same, key=lambda r: np.count_nonzero(ref == r))
    return out


def propagate(model: RegionModel, image: np.ndarray) -> RegionMap:
    """The reference's regions on `image` (any size): registration first, colour centres as fallback."""
    cfg = model.config
    _to_work(image, cfg)  # validates dtype and shape
    work = cv2.resize(image, (model.reference.shape[1], model.reference.shape[0]), interpolation=cv2.INTER_AREA)
    h, w = work.shape[:2]
    labels, method, score = None, "centres", 0.0
    if cfg.registration not in ("ecc", "orb", "none"):
        raise ConfigError(f"unknown registration {cfg.registration!r}; use ecc, orb or none")
    if cfg.registration != "none":
        ref_lab = model.labels.astype(np.float32)
        ones = np.ones((h, w), np.float32)
        if cfg.registration == "ecc":
            warp = _register_ecc(model.reference, work)
            if warp is not None:
                flags = cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP
                warped = cv2.warpAffine(ref_lab, warp, (w, h), flags=flags, borderMode=cv2.BORDER_REPLICATE)
                grey = cv2.warpAffine(_grey(model.reference), warp, (w, h),
                                      flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
                valid = cv2.warpAffine(ones, warp, (w, h), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP) > 0
        else:
            hom = _register_orb(model.reference, work)
            warp = hom
            if hom is not None:
                warped = cv2.warpPerspective(ref_lab, hom, (w, h), flags=cv2.INTER_NEAREST,
                                             borderMode=cv2.BORDER_REPLICATE)
                grey = cv2.warpPerspective(_grey(model.reference), hom, (w, h))
                valid = cv2.warpPerspective(ones, hom, (w, h), flags=cv2.INTER_NEAREST) > 0
        if warp is not None:
            score = _correlation(grey, _grey(work), valid)
            if score >= cfg.min_correlation and valid.mean() > 0.5:
                labels, method = warped.astype(np.int32), cfg.registration
    if labels is None:
        labels = _by_centres(model, work)
    full = cv2.resize(labels.astype(np.float32), (image.shape[1], image.shape[0]),
                      interpolation=cv2.INTER_NEAREST).astype(np.int32)
    return RegionMap(full, list(model.names), method, float(score))


def reference_map(model: RegionModel, shape: tuple[int, int]) -> RegionMap:
    """The reference's own region map at full image size `shape` (h, w)."""
    full = cv2.resize(model.labels.astype(np.float32), (shape[1], shape[0]),
                      interpolation=cv2.INTER_NEAREST).astype(np.int32)
    return RegionMap(full, list(model.names), "user" if model.source == "user" else "reference")


# ---- user annotations --------------------------------------------------------------------------
def load_user_regions(folder: str | Path, size: int | tuple[int, int] | None = None
                      ) -> dict[str, dict[str, np.ndarray]]:
    """Read user region masks laid out as ``folder/<region_name>/<image_stem>.png``.

    Returns {image_stem: {region_name: uint8 {0,255} mask}}. Errors name the folder or file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(folder, "region folder not found")
    out: dict[str, dict[str, np.ndarray]] = {}
    for region_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        for f in sorted(region_dir.glob("*.png")):
            out.setdefault(f.stem, {})[region_dir.name] = read_mask(f, size)
    if not out:
        raise DataError(folder, "no region masks found (expected <region_name>/<image_stem>.png)")
    return out


# ---- whole pipeline ----------------------------------------------------------------------------
def region_maps(images: Sequence[np.ndarray], ids: Sequence[str], config: RegionConfig | None = None,
                seed: int = 0, user_regions: dict[str, dict[str, np.ndarray]] | None = None,
                reference: int = 0) -> dict[str, RegionMap]:
    """Region maps for every good image.

    With `user_regions` ({stem: {region: mask}}, see `load_user_regions`), annotated images keep
    their annotation and each other image takes the annotated reference that registers best.
    Otherwise image `reference` is segmented automatically and propagated to the rest.
    """
    if len(images) != len(ids):
        raise ConfigError(f"{len(images)} images but {len(ids)} ids")
    if not images:
        raise ConfigError("no good images to build regions from")
    cfg = config or RegionConfig()
    models: list[RegionModel] = []
    out: dict[str, RegionMap] = {}
    if user_regions:
        annotated = [i for i, s in enumerate(ids) if s in user_regions]
        if not annotated:
            raise ConfigError(f"region annotations name images {sorted(user_regions)[:3]}... "
                              "but none of them is among the good images")
        names = sorted({n for v in user_regions.values() for n in v})
        for i in annotated:
            masks = {n: user_regions[ids[i]].get(n, np.zeros(images[i].shape[:2], np.uint8)) for n in names}
            masks = {n: (cv2.resize(m, (images[i].shape[1], images[i].shape[0]), interpolation=cv2.INTER_NEAREST)
                         if m.shape[:2] != images[i].shape[:2] else m) for n, m in masks.items()}
            model = model_from_masks(images[i], masks, cfg)
            models.append(model)
            out[ids[i]] = reference_map(model, images[i].shape[:2])
    else:
        if not 0 <= reference < len(images):
            raise ConfigError(f"reference index {reference} out of range 0..{len(images) - 1}")
        model = segment_reference(images[reference], cfg, seed)
        models.append(model)
        out[ids[reference]] = reference_map(model, images[reference].shape[:2])
    for img, sid in zip(images, ids, strict=False):
        if sid in out:
            continue
        best = None
        for model in models:
            rm = propagate(model, img)
            if best is None or (rm.method != "centres", rm.score) > (best.method != "centres", best.score):
                best = rm
        assert best is not None  # models is not empty
        out[sid] = best
    return out


# ---- masks from regions ------------------------------------------------------------------------
def candidate_regions(region_map: RegionMap, min_area: float = 0.005, max_area: float = 0.35,
                      include_background: bool = False) -> list[str]:
    """Region names usable as a logical-anomaly mask (area within [min_area, max_area] of the image)."""
    areas = region_map.areas()
    return [n for n, a in areas.items()
            if min_area <= a <= max_area and (include_background or n != BACKGROUND)]


def logical_mask(region_map: RegionMap, rng: np.random.Generator, region: str | None = None,
                 min_area: float = 0.005, max_area: float = 0.35, dilate: int = 0) -> tuple[str, np.ndarray]:
    """A whole region as the defect mask (missing / misplaced component): (region name, uint8 mask).

    `region` picks one by name, else a candidate is drawn with `rng`. `dilate` grows it by that many
    pixels so a repainted component's border is inside the mask.
    """
    if region is None:
        cands = candidate_regions(region_map, min_area, max_area)
        if not cands:
            raise ConfigError(f"no region covers {min_area:.3f}..{max_area:.3f} of the image; "
                              f"areas: {', '.join(f'{n}={a:.3f}' for n, a in region_map.areas().items())}")
        region = cands[int(rng.integers(len(cands)))]
    elif region not in region_map.names:
        raise ConfigError(f"unknown region {region!r}; known: {', '.join(region_map.names)}")
    m = region_map.mask(region)
    if dilate > 0:
        m = cv2.dilate(m, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * dilate + 1, 2 * dilate + 1)))
    return region, m


def overlap_fraction(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over the smaller mask's area (0 when either is empty)."""
    a, b = a > 0, b > 0
    small = min(a.sum(), b.sum())
    return float(np.logical_and(a, b).sum() / small) if small else 0.0


def combine_region_masks(masks: Sequence[np.ndarray], max_overlap: float = 0.1) -> tuple[np.ndarray, list[int]]:
    """Union of masks for a combined anomaly, skipping any that overlaps an accepted one by more than
    `max_overlap` (of the smaller mask). Returns (uint8 {0,255} union, indices used)."""
    if not masks:
        raise ConfigError("no masks to combine")
    used: list[int] = []
    union: np.ndarray = np.zeros(masks[0].shape[:2], np.uint8)  # (numpy's stub infers shape ())
    for i, m in enumerate(masks):
        if m.shape[:2] != union.shape:
            raise ConfigError(f"mask {i} is {m.shape[1]}x{m.shape[0]}, expected {union.shape[1]}x{union.shape[0]}")
        if not (m > 0).any():
            continue
        if all(overlap_fraction(m, masks[j]) <= max_overlap for j in used):
            used.append(i)
            union[m > 0] = 255
    return union, used


# ---- visualisation -----------------------------------------------------------------------------
def _palette(n: int) -> np.ndarray:
    hues = (np.arange(n) * 180 / max(n, 1)).astype(np.uint8)
    hsv = np.stack([hues, np.full(n, 200, np.uint8), np.full(n, 255, np.uint8)], -1)[None]
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0]


def overlay(image: np.ndarray, region_map: RegionMap, alpha: float = 0.5) -> np.ndarray:
    """The image with each region tinted (background untinted) and region borders drawn."""
    pal = _palette(len(region_map.names)).astype(np.float32)
    out = image.astype(np.float32).copy()
    for i, name in enumerate(region_map.names):
        if name == BACKGROUND:
            continue
        sel = region_map.labels == i
        out[sel] = (1 - alpha) * out[sel] + alpha * pal[i]
    edges = cv2.morphologyEx(region_map.labels.astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    out[edges] = 255
    return out.clip(0, 255).astype(np.uint8)


def contact_sheet(images: Sequence[np.ndarray], maps: Sequence[RegionMap], height: int = 256) -> np.ndarray:
    """Images (top row) and region overlays (bottom row) side by side, each resized to `height`."""
    tops, bottoms = [], []
    for img, rm in zip(images, maps, strict=False):
        w = max(1, round(img.shape[1] * height / img.shape[0]))
        tops.append(cv2.resize(img, (w, height), interpolation=cv2.INTER_AREA))
        ov = overlay(img, rm)
        bottoms.append(cv2.resize(ov, (w, height), interpolation=cv2.INTER_NEAREST))
        cv2.putText(bottoms[-1], rm.method, (3, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1)
    return np.vstack([np.hstack(tops), np.hstack(bottoms)])


def config_dict(config: RegionConfig) -> dict:
    """The config as JSON-ready dict (saved beside outputs)."""
    return asdict(config)


def reference_regions(data: FitData, n_colours: int, folder: str | Path | None = None, seed: int = 0) -> RegionModel:
    """The region model a generator places parts by: the user's region masks of the first annotated
    good training image (`folder`, else `data.extra["semantic_regions"]`), else the first good image
    segmented automatically (deterministic for a seed, so a loaded generator rebuilds the same regions).
    Shared by GAA's region-guided placement and the logical generator."""
    cfg = RegionConfig(n_colours=n_colours)
    folder = folder or data.extra.get("semantic_regions")
    if folder:
        user = load_user_regions(folder, data.size)
        ref = next((g for g in data.good if g.id in user or g.image.stem in user), None)
        if ref is None:
            raise ConfigError(f"{folder}: no region masks for any good training image "
                              f"(expected <region_name>/<stem>.png, e.g. stem {data.good[0].image.stem})")
        return model_from_masks(data.image(ref), user.get(ref.id) or user[ref.image.stem], cfg)
    return segment_reference(data.image(data.good[0]), cfg, seed=seed)
