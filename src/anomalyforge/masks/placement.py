"""Where a defect mask goes on a good image: inside the object, along its edge, or a whole region.

`place_mask` draws a random geometric transform (flip, rotation, scale) and a position such that
the transformed mask lies inside `region` (structural anomalies anywhere on the object), touches
the region's edge while staying on it ("edge": chipped rims, cracks from a border), or takes the
region itself ("region": logical anomalies such as a missing part). Valid positions are found
exactly for every position at once by FFT correlation of the mask with the region, so placement
never loops blindly. `combine_masks` places several masks whose pairwise IoU stays under a
threshold (combined anomalies).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import cv2
import numpy as np
from scipy.signal import fftconvolve

Mode = Literal["inside", "edge", "region"]


class NoPlacement(Exception):
    """No valid position for the mask in the region (the caller redraws)."""


def _affine(rng: np.random.Generator, rotation: float, scale: tuple[float, float], flip: bool
            ) -> tuple[np.ndarray, dict]:
    ang = float(rng.uniform(-rotation, rotation)) if rotation > 0 else 0.0
    lo, hi = scale
    s = float(np.exp(rng.uniform(np.log(lo), np.log(hi)))) if hi > lo else float(lo)
    fx = bool(rng.random() < 0.5) if flip else False
    fy = bool(rng.random() < 0.5) if flip else False
    t = np.deg2rad(ang)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    a = rot @ np.diag([-s if fx else s, -s if fy else s])
    return a, {"rotation": round(ang, 4), "scale": round(s, 4), "flip_x": fx, "flip_y": fy}


def _correlate(field: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """For every top-left position where `kernel` fits, sum(field * kernel) (rounded counts)."""
    out = fftconvolve(field.astype(np.float64), kernel[::-1, ::-1].astype(np.float64), mode="valid")
    return np.round(out)


def place_mask(mask: np.ndarray, region: np.ndarray, rng: np.random.Generator, mode: Mode = "inside", *,
               rotation: float = 0.0, scale: tuple[float, float] = (1.0, 1.0), flip: bool = False,
               min_inside: float = 0.95, tries: int = 6, candidates: int = 1,
               score: Callable[[np.ndarray, np.ndarray], float] | None = None
               ) -> tuple[np.ndarray, tuple[int, int], np.ndarray]:
    """Place a binary mask in `region` (both uint8/bool, any sizes; output has the region's size).

    Returns (placed_mask uint8 {0,255}, offset (dx, dy) of the mask's centroid, transform): the 2x3
    affine matrix mapping the input mask's pixel coordinates to the output's, so the caller can
    warp the defect's image with the very same `cv2.warpAffine`. The transform itself (rotation
    in degrees within +-rotation, log-uniform scale in `scale`, random flips when `flip`) is drawn
    from `rng`; later tries shrink the mask when it does not fit. With `candidates` > 1 and a
    `score(placed_mask, transform)`, that many valid positions are drawn and the lowest-scoring one
    is kept (context-aware placement, e.g. where the surroundings look like the defect's own).
    Raises NoPlacement.
    """
    reg = np.asarray(region) > 0
    h, w = reg.shape
    if mode == "region":
        if not reg.any():
            raise NoPlacement("empty region")
        return reg.astype(np.uint8) * 255, (0, 0), np.array([[1.0, 0, 0], [0, 1.0, 0]])
    src = (np.asarray(mask) > 0).astype(np.uint8)
    ys, xs = np.nonzero(src)
    if len(xs) == 0:
        raise NoPlacement("empty mask")
    c = np.array([xs.mean(), ys.mean()])
    band = None
    if mode == "edge":
        band = reg & ~(cv2.erode(reg.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0)
        if not band.any():
            raise NoPlacement("region has no edge")
    outside = ~reg
    x0, y0, bw, bh = cv2.boundingRect(src)
    corners = np.array([[x0, y0], [x0 + bw, y0], [x0, y0 + bh], [x0 + bw, y0 + bh]], float) - c
    shrink = 1.0
    for _ in range(tries):
        a, info = _affine(rng, rotation, scale, flip)
        a = a * shrink
        ext = np.abs(corners @ a.T).max(axis=0)
        cw, ch = int(np.ceil(ext[0])) * 2 + 5, int(np.ceil(ext[1])) * 2 + 5
        cc = np.array([cw / 2.0, ch / 2.0])
        m0 = np.hstack([a, np.round(cc - a @ c)[:, None]])  # integer shift: exact for pure moves
        k = cv2.warpAffine(src, m0, (cw, ch), flags=cv2.INTER_NEAREST)
        kx, ky, kw, kh = cv2.boundingRect(k)
        if kw == 0 or kw > w or kh > h:
            shrink *= 0.8
            continue
        k = k[ky:ky + kh, kx:kx + kw]
        area = float(k.sum())
        off_region = _correlate(outside, k)
        valid = off_region <= (1.0 - min_inside) * area + 0.5
        if band is not None:
            valid &= _correlate(band, k) > 0.5
        idx = np.flatnonzero(valid)
        if len(idx) == 0:
            shrink *= 0.8
            continue
        picks = rng.choice(idx, size=min(max(1, candidates), len(idx)), replace=False)
        best: tuple[np.ndarray, np.ndarray] | None
        best, best_score = None, np.inf
        for pick in picks:
            py, px = divmod(int(pick), valid.shape[1])
            placed = np.zeros((h, w), np.uint8)
            placed[py:py + kh, px:px + kw] = k * 255
            mat = m0.copy()
            mat[:, 2] += (px - kx, py - ky)
            sc = float(score(placed, mat)) if score is not None and len(picks) > 1 else 0.0
            if best is None or sc < best_score:
                best, best_score = (placed, mat), sc
        assert best is not None  # picks is not empty
        placed, mat = best
        new_c = a @ c + mat[:, 2]
        return placed, (int(round(new_c[0] - c[0])), int(round(new_c[1] - c[1]))), mat
    raise NoPlacement("mask does not fit in the region")


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two binary masks (0 when both are empty)."""
    a, b = a > 0, b > 0
    u = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / u) if u else 0.0


def combine_masks(masks: Sequence[np.ndarray], region: np.ndarray, rng: np.random.Generator,
                  mode: Mode = "inside", max_iou: float = 0.1, tries: int = 10, **kwargs
                  ) -> tuple[np.ndarray, list[tuple[np.ndarray, tuple[int, int], np.ndarray]]]:
    """Place several masks in `region` so that no two overlap with IoU above `max_iou`.

    Returns (union uint8 {0,255}, list of each place_mask result). Masks that cannot be placed
    without overlapping after `tries` draws are left out; NoPlacement if none could be placed.
    """
    placed: list[tuple[np.ndarray, tuple[int, int], np.ndarray]] = []
    for m in masks:
        for _ in range(tries):
            try:
                res = place_mask(m, region, rng, mode, **kwargs)
            except NoPlacement:
                break
            if all(iou(res[0], p[0]) <= max_iou for p in placed):
                placed.append(res)
                break
    if not placed:
        raise NoPlacement("no mask could be placed")
    union = np.zeros(np.asarray(region).shape, np.uint8)
    for p in placed:
        union |= p[0]
    return union, placed
