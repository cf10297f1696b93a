"""Joint image + mask augmentation for few-shot defect training (AnomalyDiffusion supplement):
random crop, translation and rotation applied identically to both, keeping the defect inside
the frame; seeded flips (DualAnoDiff); resizing to the diffusion resolution. Pure OpenCV/numpy,
seeded by a numpy Generator.
"""

from __future__ import annotations

import cv2
import numpy as np


def augment_pair(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, max_rotation: float = 30.0,
                 min_crop: float = 0.8, tries: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Rotate (±max_rotation°), crop (side ≥ min_crop) and translate image (H, W, 3) and mask (H, W)
    together; the output keeps the input size. A draw that would push any defect pixel out of the
    frame is redrawn (up to `tries` times), else the pair is returned unchanged."""
    h, w = mask.shape
    n_defect = int((mask > 0).sum())
    for _ in range(tries):
        angle = rng.uniform(-max_rotation, max_rotation)
        side = rng.uniform(min_crop, 1.0)
        cw, ch = side * w, side * h
        cx = rng.uniform(cw / 2, w - cw / 2)
        cy = rng.uniform(ch / 2, h - ch / 2)
        # rotate about the crop centre, then map the crop window onto the full frame
        rot = cv2.getRotationMatrix2D((cx, cy), angle, 1.0)
        rot = np.vstack([rot, [0, 0, 1]])
        scale = np.array([[w / cw, 0, -(cx - cw / 2) * w / cw], [0, h / ch, -(cy - ch / 2) * h / ch], [0, 0, 1]])
        mat = (scale @ rot)[:2]
        m2 = cv2.warpAffine(mask, mat, (w, h), flags=cv2.INTER_NEAREST, borderValue=0)
        if n_defect == 0 or (m2 > 0).sum() >= 0.9 * n_defect * (w / cw) * (h / ch):
            img2 = cv2.warpAffine(image, mat, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
            return img2, m2
    return image.copy(), mask.copy()


def flip_pair(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Horizontal and vertical flips, each with probability 1/2, applied to image and mask together."""
    if rng.random() < 0.5:
        image, mask = image[:, ::-1], mask[:, ::-1]
    if rng.random() < 0.5:
        image, mask = image[::-1], mask[::-1]
    return np.ascontiguousarray(image), np.ascontiguousarray(mask)


def to_resolution(img: np.ndarray, side: int, mask: bool = False) -> np.ndarray:
    """Square image (H, W[, 3]) resized to (side, side): area / cubic for images; masks stay binary
    {0, 255} (a cell counts when a quarter of it is defect, so thin defects survive shrinking)."""
    if img.shape[0] == side and img.shape[1] == side:
        return np.ascontiguousarray(img)
    if mask:
        out = cv2.resize(img, (side, side), interpolation=cv2.INTER_AREA)
        return np.where(out >= 64, 255, 0).astype(np.uint8)
    return cv2.resize(img, (side, side), interpolation=cv2.INTER_AREA if img.shape[0] > side else cv2.INTER_CUBIC)
