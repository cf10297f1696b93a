"""Foreground (object) masks for good images, without pretrained models.

Why: synthetic defects must land on the inspected object, not on the background. Industrial
images are usually an object on a plain background (bottle, juice bottle) or a texture that fills
the frame (magnetic tile, carpet). We segment classically:

1. Otsu threshold of the grey image (triangle threshold when Otsu's classes are very unbalanced);
   the class that dominates the image border is the background (border-background heuristic).
2. If the border is not dominated by one class, the image is a texture: the whole image is
   foreground. Same when the object would cover almost all or almost none of the image.
3. If the grey threshold is ambiguous, k-means colour clustering in LAB (2 clusters) is tried.
4. GrabCut, initialised from that estimate (sure background at the border), refines the edge.
5. Holes are filled and tiny components dropped (an object is solid as seen from the camera).

User-supplied region masks (a folder of PNGs matched to images by file stem) always win.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from anomalyforge.data.io import read_mask
from anomalyforge.errors import DataError


@dataclass
class ForegroundConfig:
    """Knobs of the classical segmentation (defaults sound for objects and textures alike)."""

    border: float = 0.04  # width of the border ring, as a fraction of the image side
    border_dominance: float = 0.85  # fraction of the border one class must hold to be background
    min_fraction: float = 0.03  # an object smaller than this fraction of the image -> texture
    max_fraction: float = 0.97  # an object larger than this -> texture (whole image)
    grabcut_iters: int = 2  # 0 disables GrabCut refinement
    work_size: int = 128  # segmentation runs at this side length, the result is resized back
    min_component: float = 0.01  # components smaller than this fraction of the object are dropped


def _border_ring(h: int, w: int, frac: float) -> np.ndarray:
    b = max(1, int(round(min(h, w) * frac)))
    ring = np.zeros((h, w), bool)
    ring[:b, :] = ring[-b:, :] = True
    ring[:, :b] = ring[:, -b:] = True
    return ring


def _object_from_labels(fg: np.ndarray, ring: np.ndarray, cfg: ForegroundConfig) -> np.ndarray | None:
    """Given a binary split, decide which side is the object via the border; None if texture-like."""
    border_fg = fg[ring].mean()
    if border_fg <= 1 - cfg.border_dominance:
        obj = fg
    elif border_fg >= cfg.border_dominance:
        obj = ~fg
    else:
        return None
    frac = obj.mean()
    if frac < cfg.min_fraction or frac > cfg.max_fraction:
        return None
    return obj


def _fill_and_clean(obj: np.ndarray, cfg: ForegroundConfig) -> np.ndarray:
    m: np.ndarray = obj.astype(np.uint8) * 255
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    m = cv2.morphologyEx(m, cv2.MORPH_OPEN, k)
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return m
    total = sum(cv2.contourArea(c) for c in contours)
    keep = [c for c in contours if cv2.contourArea(c) >= cfg.min_component * total]
    out = np.zeros_like(m)
    cv2.drawContours(out, keep, -1, 255, thickness=cv2.FILLED)  # fills holes
    return out


def _grey_estimate(img: np.ndarray, ring: np.ndarray, cfg: ForegroundConfig) -> np.ndarray | None:
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    grey = cv2.GaussianBlur(grey, (5, 5), 0)
    for flag in (cv2.THRESH_OTSU, cv2.THRESH_TRIANGLE):
        _, th = cv2.threshold(grey, 0, 255, cv2.THRESH_BINARY | flag)
        obj = _object_from_labels(th > 0, ring, cfg)
        if obj is not None:
            return obj
    return None


def _colour_estimate(img: np.ndarray, ring: np.ndarray, cfg: ForegroundConfig) -> np.ndarray | None:
    lab = cv2.cvtColor(cv2.GaussianBlur(img, (5, 5), 0), cv2.COLOR_RGB2LAB).reshape(-1, 3).astype(np.float32)
    crit = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 0.5)
    cv2.setRNGSeed(0)  # k-means initialisation is deterministic
    _, labels, _ = cv2.kmeans(lab, 2, None, crit, 2, cv2.KMEANS_PP_CENTERS)  # type: ignore[call-overload]  # stub: no None labels
    lab_img = labels.reshape(img.shape[:2]) > 0
    return _object_from_labels(lab_img, ring, cfg)


def _grabcut(img: np.ndarray, obj: np.ndarray, ring: np.ndarray, iters: int) -> np.ndarray:
    gc = np.where(obj, cv2.GC_PR_FGD, cv2.GC_PR_BGD).astype(np.uint8)
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))
    sure_fg = cv2.erode(obj.astype(np.uint8), k, iterations=2) > 0
    gc[sure_fg] = cv2.GC_FGD
    gc[ring & ~obj] = cv2.GC_BGD
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)
    try:
        cv2.grabCut(np.ascontiguousarray(img[..., ::-1]), gc, None, bgd, fgd, iters,  # type: ignore[call-overload]
                    cv2.GC_INIT_WITH_MASK)  # (the stub has no rect=None, which GC_INIT_WITH_MASK ignores)
    except cv2.error:  # degenerate colour models (e.g. flat image): keep the estimate
        return obj
    out = (gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)
    return out if out.any() else obj


def foreground_mask(image: np.ndarray, cfg: ForegroundConfig | None = None) -> np.ndarray:
    """uint8 {0, 255} (H, W) mask of the object in an RGB image; all 255 for textures."""
    cfg = cfg or ForegroundConfig()
    h, w = image.shape[:2]
    scale = cfg.work_size / max(h, w)
    small = cv2.resize(image, (max(8, round(w * scale)), max(8, round(h * scale))),
                       interpolation=cv2.INTER_AREA) if scale < 1 else image
    ring = _border_ring(small.shape[0], small.shape[1], cfg.border)
    obj = _grey_estimate(small, ring, cfg)
    if obj is None:
        obj = _colour_estimate(small, ring, cfg)
    if obj is None:
        return np.full((h, w), 255, np.uint8)
    if cfg.grabcut_iters > 0:
        obj = _grabcut(small, obj, ring, cfg.grabcut_iters)
    m = _fill_and_clean(obj, cfg)
    if not m.any() or m.mean() / 255 > cfg.max_fraction:
        return np.full((h, w), 255, np.uint8)
    if m.shape != (h, w):
        m = cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR)
        m = np.where(m >= 128, 255, 0).astype(np.uint8)
    return m


def is_whole_image(mask: np.ndarray) -> bool:
    """True when a foreground mask covers the whole frame (texture category)."""
    return bool(mask.min() > 0)


def region_mask_for(image_path: str | Path, region_dir: str | Path, size: int | tuple[int, int]) -> np.ndarray:
    """A user-supplied region mask for `image_path`: `<region_dir>/<stem>.png` (or `<stem>_mask.png`)."""
    region_dir = Path(region_dir)
    if not region_dir.is_dir():
        raise DataError(region_dir, "region mask folder not found")
    stem = Path(image_path).stem
    for name in (f"{stem}.png", f"{stem}_mask.png"):
        p = region_dir / name
        if p.is_file():
            m = read_mask(p, size)
            if not m.any():
                raise DataError(p, "region mask is empty")
            return m
    raise DataError(region_dir, f"no region mask {stem}.png for image {image_path}")


def category_foregrounds(images: list[np.ndarray], cfg: ForegroundConfig | None = None,
                         texture_vote: float = 1 / 3) -> tuple[list[np.ndarray], bool]:
    """Foreground masks of all good images of one category, decided consistently.

    Per-image segmentation is unreliable on textures (a bright streak can look like an object), so
    the decision "object or texture" is taken for the category: when at least `texture_vote` of the
    images look like textures, every mask is the whole image. For objects, an image whose mask is
    whole-frame or whose area is far from the category's median (outside 0.5x..2x) gets the
    pixel-wise majority of the other masks instead. Returns (masks, is_texture).
    """
    cfg = cfg or ForegroundConfig()
    return decide_category([foreground_mask(im, cfg) for im in images], texture_vote)


def decide_category(masks: list[np.ndarray], texture_vote: float = 1 / 3) -> tuple[list[np.ndarray], bool]:
    """The category-level step of `category_foregrounds`, given per-image `foreground_mask` results
    (lets callers compute those in parallel)."""
    images = masks
    if not masks:
        return masks, True
    whole = np.array([is_whole_image(m) for m in masks])
    if whole.mean() >= texture_vote:
        return [np.full(im.shape[:2], 255, np.uint8) for im in images], True
    areas = np.array([m.mean() / 255 for m in masks])
    med = float(np.median(areas[~whole]))
    bad = whole | (areas < 0.5 * med) | (areas > 2 * med)
    if bad.any():
        good_masks = [m for m, b in zip(masks, bad, strict=False) if not b]
        shapes = {m.shape for m in good_masks}
        if good_masks and len(shapes) == 1:
            consensus = (np.mean([m > 0 for m in good_masks], axis=0) >= 0.5).astype(np.uint8) * 255
            masks = [consensus.copy() if b and consensus.shape == m.shape and consensus.any() else m
                     for m, b in zip(masks, bad, strict=False)]
    return masks, False
