"""Joint image + mask augmentation for few-shot defect training: AnomalyDiffusion's official
transform (flips, 0–20° rotation, crop keeping the defect box, with probability 1/2) applied
identically to both; seeded flips (DualAnoDiff); resizing to the diffusion resolution. Pure
OpenCV/numpy, seeded by a numpy Generator.
"""

from __future__ import annotations

import cv2
import numpy as np


def augment_pair(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, p: float = 0.5,
                 max_rotation: float = 20.0, flip: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """AnomalyDiffusion's training augmentation (official `utils.random_transform`), applied to a pair
    with probability `p`: vertical and horizontal flips (each 1/2, when `flip`), a rotation by a whole
    number of degrees in [0, max_rotation] about the centre, then a random crop that keeps the
    defect's bounding box (each side drawn between the image edge and the box), resized back to
    the input size (the crop's aspect ratio is not kept, as in the official code).

    Ours: the rotated image's corners are reflected (official: black; only cells outside the mask,
    which the masked loss ignores); the crop's far edge is drawn so the box's last row/column stays
    in (the official slice can drop it). A pair without defect pixels is only flipped and rotated.
    """
    if rng.random() >= p:
        return image.copy(), mask.copy()
    h, w = mask.shape
    img, m = image, mask
    if flip:
        img, m = flip_pair(img, m, rng, order="vh")
    angle = float(rng.integers(0, int(max_rotation) + 1))
    if angle:
        rot = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), angle, 1.0)
        m = cv2.warpAffine(m, rot, (w, h), flags=cv2.INTER_NEAREST, borderValue=0)
        img = cv2.warpAffine(img, rot, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
    ys, xs = np.nonzero(m > 127)
    if len(ys):
        y1, y2, x1, x2 = int(ys.min()), int(ys.max()), int(xs.min()), int(xs.max())
        cy1, cx1 = int(rng.integers(0, y1 + 1)), int(rng.integers(0, x1 + 1))
        cy2, cx2 = int(rng.integers(y2 + 1, h + 1)), int(rng.integers(x2 + 1, w + 1))
        img = cv2.resize(np.ascontiguousarray(img[cy1:cy2, cx1:cx2]), (w, h), interpolation=cv2.INTER_LINEAR)
        m = cv2.resize(np.ascontiguousarray(m[cy1:cy2, cx1:cx2]), (w, h), interpolation=cv2.INTER_LINEAR)
        m = np.where(m >= 128, 255, 0).astype(np.uint8)
    return np.ascontiguousarray(img), np.ascontiguousarray(m)


def flip_pair(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator,
              order: str = "hv") -> tuple[np.ndarray, np.ndarray]:
    """Horizontal and vertical flips, each with probability 1/2 (drawn in `order`), applied to image
    and mask together."""
    for axis in order:
        if rng.random() < 0.5:
            if axis == "h":
                image, mask = image[:, ::-1], mask[:, ::-1]
            else:
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
