"""GAA-style mask enhancement (section 3.3): new, plausible defect shapes from a real mask.

Steps, each documented in `EnhanceConfig`: morphological closing (dilate with B1, erode with B2)
to merge fragments, contour extraction, polygon approximation with tolerance delta
(cv2.approxPolyDP), random perturbation of the polygon vertices, and area-adaptive scaling towards
the defect type's mean area A_avg with factor  alpha*sqrt(A_avg/A_M) + (1-alpha)*cbrt(A_avg/A_M)
(a square root would match the mean area exactly, the cube root moves only part of the way, so
sizes are pulled towards the mean while keeping variety).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass
class EnhanceConfig:
    """Mask enhancement parameters.

    The paper gives the procedure, not every constant; values here are defaults chosen to keep a
    defect recognisable at 256 px while changing its outline visibly (documented per field).
    """

    b1: int = 5  # dilation kernel side (px at 256) of the closing: bridges gaps up to ~b1 px
    b2: int = 5  # erosion kernel side (px at 256); b2 == b1 gives a pure closing
    delta: float = 0.01  # polygon tolerance, fraction of the contour perimeter (approxPolyDP epsilon)
    perturb: float = 0.08  # vertex jitter std, fraction of sqrt(contour area)
    alpha: float = 0.5  # weight of the square-root term in the area-adaptive factor
    min_scale: float = 0.5  # the area-adaptive factor is clipped to [min_scale, max_scale]
    max_scale: float = 2.0
    min_area: int = 4  # polygons smaller than this (px) are dropped
    ref_size: int = 256  # kernel sizes above are given at this image side and scaled with it


def _kernel(side: float) -> np.ndarray:
    s = max(1, int(round(side)))
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (s, s))


def area_factor(area: float, mean_area: float, alpha: float = 0.5) -> float:
    """alpha*sqrt(A_avg/A_M) + (1-alpha)*cbrt(A_avg/A_M): the linear scale applied to a mask."""
    r = float(mean_area) / max(float(area), 1.0)
    return float(alpha * np.sqrt(r) + (1 - alpha) * np.cbrt(r))


def scale_about_centroid(mask: np.ndarray, factor: float) -> np.ndarray:
    """Scale a binary mask about its centroid (nearest neighbour), same frame size."""
    m = cv2.moments((mask > 0).astype(np.uint8), binaryImage=True)
    if m["m00"] == 0:
        return mask.copy()
    cx, cy = m["m10"] / m["m00"], m["m01"] / m["m00"]
    mat = np.array([[factor, 0, (1 - factor) * cx], [0, factor, (1 - factor) * cy]], np.float64)
    out = cv2.warpAffine(mask, mat, (mask.shape[1], mask.shape[0]), flags=cv2.INTER_NEAREST)
    return np.where(out > 0, 255, 0).astype(np.uint8)


def enhance_mask(mask: np.ndarray, rng: np.random.Generator, cfg: EnhanceConfig | None = None,
                 mean_area: float | None = None) -> np.ndarray:
    """A varied version of a binary defect mask (uint8 {0, 255}, same size).

    `mean_area` (px) is A_avg of the defect type; None skips the area-adaptive scaling. Thin
    structures whose polygon collapses keep their closed outline, so the result is never empty
    when the input is not.
    """
    cfg = cfg or EnhanceConfig()
    src = np.where(mask > 0, 255, 0).astype(np.uint8)
    if not src.any():
        return src
    k = max(mask.shape) / cfg.ref_size
    closed = cv2.erode(cv2.dilate(src, _kernel(cfg.b1 * k)), _kernel(cfg.b2 * k))
    if not closed.any():
        closed = src
    contours, _ = cv2.findContours(closed, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    out: np.ndarray = np.zeros_like(src)
    for c in contours:
        area = cv2.contourArea(c)
        eps = cfg.delta * cv2.arcLength(c, True)
        poly = cv2.approxPolyDP(c, eps, True).reshape(-1, 2).astype(np.float64)
        if len(poly) >= 3 and area >= cfg.min_area:
            poly += rng.normal(0.0, cfg.perturb * np.sqrt(area), size=poly.shape)
            cv2.fillPoly(out, [np.round(poly).astype(np.int32)], 255)
        else:  # a thin or tiny part: keep it as it is
            cv2.drawContours(out, [c], -1, 255, thickness=cv2.FILLED)
    if not out.any():
        out = closed
    if mean_area is not None and mean_area > 0:
        f = area_factor(float((out > 0).sum()), mean_area, cfg.alpha)
        f = float(np.clip(f, cfg.min_scale, cfg.max_scale))
        scaled = scale_about_centroid(out, f)
        if scaled.any():
            out = scaled
    return out
