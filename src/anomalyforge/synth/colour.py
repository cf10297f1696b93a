"""Colour operations shared by the model-free generators (deterministic given an rng)."""

from __future__ import annotations

import cv2
import numpy as np


def colour_jitter(img: np.ndarray, rng: np.random.Generator, strength: float) -> tuple[np.ndarray, dict]:
    """torchvision-style ColorJitter(brightness, contrast, saturation, hue all = strength), random order.

    Returns (uint8 RGB, the factors drawn). Hue shifts by up to strength * 360 degrees.
    """
    if strength <= 0:
        return img.copy(), {}
    b, c, s = (float(rng.uniform(1 - strength, 1 + strength)) for _ in range(3))
    hshift = float(rng.uniform(-strength, strength))
    order = [int(i) for i in rng.permutation(4)]
    x = img.astype(np.float32)
    for op in order:
        if op == 0:
            x = x * b
        elif op == 1:
            grey = cv2.cvtColor(np.clip(x, 0, 255).astype(np.uint8), cv2.COLOR_RGB2GRAY).mean()
            x = (x - grey) * c + grey
        elif op == 2:
            grey = cv2.cvtColor(np.clip(x, 0, 255).astype(np.uint8), cv2.COLOR_RGB2GRAY)[..., None]
            x = (x - grey) * s + grey
        else:
            hsv = cv2.cvtColor(np.clip(x, 0, 255).astype(np.uint8), cv2.COLOR_RGB2HSV).astype(np.int32)
            hsv[..., 0] = (hsv[..., 0] + int(round(hshift * 180))) % 180
            x = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
    out = np.clip(np.round(x), 0, 255).astype(np.uint8)
    return out, {"brightness": round(b, 4), "contrast": round(c, 4), "saturation": round(s, 4),
                 "hue": round(hshift, 4)}


def match_lab_stats(patch: np.ndarray, src_ref: np.ndarray, dst_ref: np.ndarray,
                    max_ratio: float = 1.5) -> np.ndarray:
    """Shift/scale `patch` (uint8 RGB) in LAB so that pixels like `src_ref` look like `dst_ref`.

    `src_ref` / `dst_ref` are (N, 3) uint8 RGB samples (the defect's surroundings in its source
    image and the target location's surroundings). Per channel: (x - mu_s) * sigma_t / sigma_s + mu_t,
    with the std ratio clipped to [1/max_ratio, max_ratio] so flat surroundings do not blow up.
    """
    if len(src_ref) < 4 or len(dst_ref) < 4:
        return patch
    def to_lab(a: np.ndarray) -> np.ndarray:
        return cv2.cvtColor(a.reshape(-1, 1, 3), cv2.COLOR_RGB2LAB).reshape(-1, 3).astype(np.float32)

    s, d = to_lab(src_ref), to_lab(dst_ref)
    mu_s, mu_d = s.mean(0), d.mean(0)
    ratio = np.clip((d.std(0) + 1.0) / (s.std(0) + 1.0), 1 / max_ratio, max_ratio)
    lab = cv2.cvtColor(patch, cv2.COLOR_RGB2LAB).astype(np.float32)
    lab = (lab - mu_s) * ratio + mu_d
    return cv2.cvtColor(np.clip(np.round(lab), 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)


def draem_augment(img: np.ndarray, rng: np.random.Generator, k: int = 3) -> tuple[np.ndarray, list[str]]:
    """Three of DRAEM's anomaly-source augmentations picked at random (gamma, brightness,
    sharpness, hue/saturation, solarize, posterize, invert, autocontrast, equalize, rotate)."""
    names = ["gamma", "brightness", "sharpen", "hue_sat", "solarize", "posterize", "invert",
             "autocontrast", "equalize", "rotate"]
    chosen = [names[i] for i in rng.choice(len(names), size=k, replace=False)]
    x = img.copy()
    for name in chosen:
        if name == "gamma":
            g = rng.uniform(0.5, 2.0)
            x = np.clip(255.0 * (x / 255.0) ** g, 0, 255).astype(np.uint8)
        elif name == "brightness":
            mul, add = rng.uniform(0.8, 1.2), rng.uniform(-30, 30)
            x = np.clip(x.astype(np.float32) * mul + add, 0, 255).astype(np.uint8)
        elif name == "sharpen":
            blur = cv2.GaussianBlur(x, (0, 0), 1.5)
            x = cv2.addWeighted(x, 2.0, blur, -1.0, 0)
        elif name == "hue_sat":
            hsv = cv2.cvtColor(x, cv2.COLOR_RGB2HSV).astype(np.int32)
            hsv[..., 0] = (hsv[..., 0] + int(rng.integers(-25, 26))) % 180
            hsv[..., 1] = np.clip(hsv[..., 1] + int(rng.integers(-50, 51)), 0, 255)
            x = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)
        elif name == "solarize":
            t = int(rng.integers(32, 129))
            x = np.where(x >= t, 255 - x, x).astype(np.uint8)
        elif name == "posterize":
            bits = int(rng.integers(4, 9))
            x = (x >> (8 - bits) << (8 - bits)).astype(np.uint8)
        elif name == "invert":
            x = 255 - x
        elif name == "autocontrast":
            lo, hi = x.min(axis=(0, 1), keepdims=True), x.max(axis=(0, 1), keepdims=True)
            x = ((x - lo) * (255.0 / np.maximum(hi - lo, 1))).astype(np.uint8)
        elif name == "equalize":
            x = np.stack([cv2.equalizeHist(np.ascontiguousarray(x[..., i])) for i in range(3)], axis=2)
        else:
            ang = rng.uniform(-45, 45)
            h, w = x.shape[:2]
            m = cv2.getRotationMatrix2D((w / 2, h / 2), ang, 1.0)
            x = cv2.warpAffine(x, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return x, chosen
