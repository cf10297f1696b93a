"""Natural Synthetic Anomalies (Schlueter et al., ECCV 2022): Poisson-blended patches.

A rectangular patch of another good image (each side U(0.1, 0.4) of the image side, as the
paper's default object setting) is resized by U(0.7, 1.3) and blended into the target with OpenCV
`seamlessClone` (normal or mixed gradients; `clone_mode="random"` picks either per pair, as the
paper's variants). Poisson blending changes pixels smoothly, so the mask is where the change is
visible: per-pixel |difference| above `change_threshold` inside the patch, morphologically opened
and closed, holes filled; everything outside the mask is the good image.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from anomalyforge.errors import ConfigError
from anomalyforge.masks.placement import place_mask
from anomalyforge.synth.base import register
from anomalyforge.synth.mf_base import Draft, ModelFreeConfig, ModelFreeGenerator, Reject

_MODES = {"normal": cv2.NORMAL_CLONE, "mixed": cv2.MIXED_CLONE}


@dataclass
class NSAConfig(ModelFreeConfig):
    """Patch side (0.1, 0.4) of the image, resize (0.7, 1.3), normal or mixed Poisson cloning."""

    patch_side: tuple[float, float] = (0.1, 0.4)
    resize: tuple[float, float] = (0.7, 1.3)
    clone_mode: str = "random"  # "normal", "mixed" or "random"
    change_threshold: int = 12  # 0-255; pixels changed more than this form the mask
    min_changed: float = 0.6


def _fill_holes(m: np.ndarray) -> np.ndarray:
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    out = np.zeros_like(m)
    cv2.drawContours(out, contours, -1, 255, thickness=cv2.FILLED)
    return out


@register
class NSA(ModelFreeGenerator):
    """NSA: Poisson-blended patches from other good images."""

    name = "nsa"
    Config = NSAConfig

    @classmethod
    def _check_config(cls, cfg) -> None:
        super()._check_config(cfg)
        if cfg.clone_mode not in ("normal", "mixed", "random"):
            raise ConfigError(f"clone_mode {cfg.clone_mode!r}: expected normal, mixed or random")

    def _draw(self, defect_type: str, rng: np.random.Generator) -> Draft:
        cfg = self.config
        i, img, fg = self._pick_good(rng)
        h, w = img.shape[:2]
        assert self.data is not None  # only called from generate(), which checked it
        n = len(self.data.good)
        j = int(rng.integers(n - 1)) if n > 1 else 0
        j = j + 1 if n > 1 and j >= i else j
        other, fg_o = self.data.image(self.data.good[j]), self.fg[j]
        pw = int(round(rng.uniform(*cfg.patch_side) * w))
        ph = int(round(rng.uniform(*cfg.patch_side) * h))
        r = float(rng.uniform(*cfg.resize))
        qw, qh = int(np.clip(round(pw * r), 4, w - 4)), int(np.clip(round(ph * r), 4, h - 4))
        pw, ph = min(max(pw, 4), w - 2), min(max(ph, 4), h - 2)
        # the source patch comes from the other image's object, the target location is on ours
        src_rect, _, smat = place_mask(np.full((ph, pw), 255, np.uint8), fg_o, rng, "inside",
                                       min_inside=cfg.min_on_object)
        sx, sy = int(round(smat[0, 2])), int(round(smat[1, 2]))
        patch = cv2.resize(other[sy:sy + ph, sx:sx + pw], (qw, qh), interpolation=cv2.INTER_LINEAR)
        inner = np.zeros_like(fg)
        inner[2:-2, 2:-2] = fg[2:-2, 2:-2]  # seamlessClone needs a margin inside the frame
        dst_rect, _, dmat = place_mask(np.full((qh, qw), 255, np.uint8), inner, rng, "inside",
                                       min_inside=cfg.min_on_object)
        dx, dy = int(round(dmat[0, 2])), int(round(dmat[1, 2]))
        mode = cfg.clone_mode if cfg.clone_mode != "random" else ("normal" if rng.random() < 0.5 else "mixed")
        centre = (dx + qw // 2, dy + qh // 2)
        src_bgr = np.ascontiguousarray(patch[..., ::-1])
        dst_bgr = np.ascontiguousarray(img[..., ::-1])
        full = np.full((qh, qw), 255, np.uint8)
        try:
            out = cv2.seamlessClone(src_bgr, dst_bgr, full, centre, _MODES[mode])[..., ::-1]
        except cv2.error:
            raise Reject("clone_failed") from None
        diff = np.abs(out.astype(np.int16) - img.astype(np.int16)).max(axis=2)
        m = ((diff > cfg.change_threshold) & (dst_rect > 0)).astype(np.uint8) * 255
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
        m = cv2.morphologyEx(cv2.morphologyEx(m, cv2.MORPH_OPEN, k), cv2.MORPH_CLOSE, k, iterations=2)
        m = _fill_holes(m) & dst_rect
        return Draft(np.ascontiguousarray(out), i, m, 0,
                     {"other_good": str(self.data.good[j].image), "patch": [sx, sy, pw, ph],
                      "to": [dx, dy, qw, qh], "clone_mode": mode})
