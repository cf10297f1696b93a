"""CutPaste (Li et al., CVPR 2021): a patch of the good image itself, jittered and pasted elsewhere.

`cutpaste`: a rectangle with area ratio U(0.02, 0.15) of the image and log-uniform aspect ratio in
(0.3, 1/0.3), colour jitter 0.1. `cutpaste-scar`: a thin rectangle (width 2-16 px, height 10-25 px
at 256 px), colour jitter 0.1, rotated by U(-45, 45) degrees. The patch is cut anywhere in the image
and pasted on the object (foreground) so that the anomaly is on the part being inspected.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from anomalyforge.masks.placement import place_mask
from anomalyforge.synth.base import register
from anomalyforge.synth.colour import colour_jitter
from anomalyforge.synth.mf_base import Draft, ModelFreeConfig, ModelFreeGenerator


@dataclass
class CutPasteConfig(ModelFreeConfig):
    """Paper values: area ratio (0.02, 0.15), aspect ratio (0.3, 1/0.3), colour jitter 0.1."""

    area_ratio: tuple[float, float] = (0.02, 0.15)
    aspect_ratio: float = 0.3
    colour_jitter: float = 0.1


@dataclass
class ScarConfig(ModelFreeConfig):
    """Paper values (at 256 px): width (2, 16), height (10, 25), rotation (-45, 45), jitter 0.1."""

    width: tuple[float, float] = (2.0, 16.0)
    height: tuple[float, float] = (10.0, 25.0)
    rotation: float = 45.0
    colour_jitter: float = 0.1


def _paste(img: np.ndarray, patch: np.ndarray, fg: np.ndarray, rng: np.random.Generator,
           rotation: float, min_inside: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rect = np.full(patch.shape[:2], 255, np.uint8)
    placed, _, mat = place_mask(rect, fg, rng, "inside", rotation=rotation, min_inside=min_inside)
    h, w = img.shape[:2]
    warped = cv2.warpAffine(patch, mat, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    out = np.where(placed[..., None] > 0, warped, img)
    return out, placed, mat


def _cut_and_paste(img: np.ndarray, fg: np.ndarray, pw: int, ph: int, rng: np.random.Generator, jitter: float,
                   rotation: float, min_on_object: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """Cut a random pw x ph patch of `img`, colour-jitter it and paste it elsewhere (`_paste`)."""
    h, w = img.shape[:2]
    x, y = int(rng.integers(0, w - pw + 1)), int(rng.integers(0, h - ph + 1))
    patch, jit = colour_jitter(img[y:y + ph, x:x + pw], rng, jitter)
    out, placed, mat = _paste(img, patch, fg, rng, rotation, min_on_object)
    return out, placed, mat, {"patch": [x, y, pw, ph], "jitter": jit}


@register
class CutPaste(ModelFreeGenerator):
    """CutPaste: rectangular patch of the image itself pasted elsewhere."""

    name = "cutpaste"
    Config = CutPasteConfig

    def _draw(self, defect_type: str, rng: np.random.Generator) -> Draft:
        cfg = self.config
        i, img, fg = self._pick_good(rng)
        h, w = img.shape[:2]
        area = rng.uniform(*cfg.area_ratio) * h * w
        aspect = float(np.exp(rng.uniform(np.log(cfg.aspect_ratio), np.log(1 / cfg.aspect_ratio))))
        pw = int(np.clip(round(np.sqrt(area * aspect)), 2, w - 1))
        ph = int(np.clip(round(np.sqrt(area / aspect)), 2, h - 1))
        out, placed, mat, info = _cut_and_paste(img, fg, pw, ph, rng, cfg.colour_jitter, 0.0, cfg.min_on_object)
        return Draft(out, i, placed, 0, {**info, "to": [int(mat[0, 2]), int(mat[1, 2])]})


@register
class CutPasteScar(ModelFreeGenerator):
    """CutPaste-Scar: a thin, rotated strip of the image pasted elsewhere."""

    name = "cutpaste-scar"
    Config = ScarConfig

    def _draw(self, defect_type: str, rng: np.random.Generator) -> Draft:
        cfg = self.config
        i, img, fg = self._pick_good(rng)
        h, w = img.shape[:2]
        pw = int(np.clip(round(self._px(rng.uniform(*cfg.width))), 1, w - 1))
        ph = int(np.clip(round(self._px(rng.uniform(*cfg.height))), 2, h - 1))
        out, placed, mat, info = _cut_and_paste(img, fg, pw, ph, rng, cfg.colour_jitter, cfg.rotation,
                                                cfg.min_on_object)
        return Draft(out, i, placed, 0, {"patch": info["patch"], "matrix": np.round(mat, 4).tolist(),
                                         "jitter": info["jitter"]})
