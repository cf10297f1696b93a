"""DRAEM-style Perlin-noise anomalies (Zavrtanik et al., ICCV 2021).

Mask: Perlin noise with scales 2^a x 2^b, a, b drawn from [0, 6) as in DRAEM's code
(`randint(0, 6)`), rotated by U(-90, 90) degrees, thresholded at 0.5, restricted to the object.
Anomaly source A: an image from `texture_dir` (DTD in the paper) or, without it, another good
image of the category, randomly shifted/flipped; in both cases three random DRAEM augmentations.
Blend: I_a = (1 - M) * I + (1 - beta) * (M * A) + beta * (M * I), beta ~ U(0, 0.8).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from anomalyforge.data.fitdata import FitData
from anomalyforge.data.io import read_image
from anomalyforge.errors import DataError
from anomalyforge.synth.base import register
from anomalyforge.synth.colour import draem_augment
from anomalyforge.synth.mf_base import Draft, ModelFreeConfig, ModelFreeGenerator

_IMAGE_EXT = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


@dataclass
class PerlinConfig(ModelFreeConfig):
    """Paper values: scale exponents [0, 6), threshold 0.5, beta (0, 0.8), rotation 90."""

    perlin_scale: tuple[int, int] = (0, 6)
    threshold: float = 0.5
    beta: tuple[float, float] = (0.0, 0.8)
    rotation: float = 90.0
    texture_dir: str | None = None  # folder of anomaly-source images (e.g. DTD); None = own goods


def _fade(t: np.ndarray) -> np.ndarray:
    return 6 * t ** 5 - 15 * t ** 4 + 10 * t ** 3


def perlin_noise(shape: tuple[int, int], res: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """2-D gradient (Perlin) noise of `shape` with `res` periods per axis, values in about [-0.7, 0.7]."""
    rh, rw = res
    H, W = int(np.ceil(shape[0] / rh) * rh), int(np.ceil(shape[1] / rw) * rw)
    dy, dx = H // rh, W // rw
    ang = 2 * np.pi * rng.random((rh + 1, rw + 1))
    grad = np.stack([np.cos(ang), np.sin(ang)], axis=-1)
    yy, xx = np.meshgrid(np.arange(H) / dy, np.arange(W) / dx, indexing="ij")
    yi, xi = yy.astype(int), xx.astype(int)
    fy, fx = yy - yi, xx - xi

    def dot(oy: int, ox: int) -> np.ndarray:
        g = grad[yi + oy, xi + ox]
        return g[..., 0] * (fx - ox) + g[..., 1] * (fy - oy)

    u, v = _fade(fx), _fade(fy)
    n0 = dot(0, 0) * (1 - u) + dot(0, 1) * u
    n1 = dot(1, 0) * (1 - u) + dot(1, 1) * u
    noise = np.sqrt(2) * (n0 * (1 - v) + n1 * v)
    return noise[:shape[0], :shape[1]]


@register
class Perlin(ModelFreeGenerator):
    """DRAEM Perlin-noise anomalies with a texture or own-image anomaly source."""

    name = "perlin"
    Config = PerlinConfig

    def _fit_extra(self, data: FitData) -> dict:
        self._textures = self._list_textures()
        return {"textures": [str(p) for p in self._textures]}

    def _load_extra(self, data: FitData, state: dict) -> None:
        self._textures = [Path(p) for p in state.get("textures", [])]

    def _list_textures(self) -> list[Path]:
        td = self.config.texture_dir
        if not td:
            return []
        root = Path(td)
        if not root.is_dir():
            raise DataError(root, "texture folder not found")
        files = sorted(p for p in root.rglob("*") if p.suffix.lower() in _IMAGE_EXT)
        if not files:
            raise DataError(root, "texture folder holds no images")
        return files

    def _texture(self, k: int) -> np.ndarray:
        """Texture image k at the data size, cached per generator and per texture list."""
        assert self.data is not None  # only called from generate(), which checked it
        key = (str(self._textures[k]), self.data.size)
        cache: dict = self.__dict__.setdefault("_texture_cache", {})
        if key not in cache:
            if len(cache) >= 256:
                cache.clear()
            cache[key] = read_image(self._textures[k], self.data.size)
        return cache[key]

    def _source(self, i: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
        assert self.data is not None  # only called from generate(), which checked it
        info: dict
        if self._textures:
            k = int(rng.integers(len(self._textures)))
            a, info = self._texture(k), {"texture": str(self._textures[k])}
        else:
            n = len(self.data.good)
            j = int(rng.integers(n - 1)) if n > 1 else 0
            j = j + 1 if n > 1 and j >= i else j
            a = self.data.image(self.data.good[j])
            h, w = a.shape[:2]
            sy, sx = int(rng.integers(h)), int(rng.integers(w))
            a = np.roll(a, (sy, sx), axis=(0, 1))
            if rng.random() < 0.5:
                a = a[:, ::-1]
            if rng.random() < 0.5:
                a = a[::-1]
            a = np.ascontiguousarray(np.rot90(a, int(rng.integers(4))))
            info = {"other_good": str(self.data.good[j].image), "shift": [sx, sy]}
        a, augs = draem_augment(a, rng)
        info["augment"] = augs
        return a, info

    def _draw(self, defect_type: str, rng: np.random.Generator) -> Draft:
        cfg = self.config
        i, img, fg = self._pick_good(rng)
        h, w = img.shape[:2]
        sx = 2 ** int(rng.integers(*cfg.perlin_scale))
        sy = 2 ** int(rng.integers(*cfg.perlin_scale))
        noise: np.ndarray = perlin_noise((h, w), (sy, sx), rng).astype(np.float32)
        ang = float(rng.uniform(-cfg.rotation, cfg.rotation))
        rot = cv2.getRotationMatrix2D((w / 2, h / 2), ang, 1.0)
        noise = cv2.warpAffine(noise, rot, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        m = (noise > cfg.threshold) & (fg > 0)
        a, info = self._source(i, rng)
        beta = float(rng.uniform(*cfg.beta))
        mf = m[..., None].astype(np.float32)
        x = img.astype(np.float32)
        out = (1 - mf) * x + (1 - beta) * mf * a.astype(np.float32) + beta * mf * x
        out = np.clip(np.round(out), 0, 255).astype(np.uint8)
        return Draft(out, i, m.astype(np.uint8) * 255, 0,
                     {"scale": [sx, sy], "rotation": round(ang, 3), "beta": round(beta, 4), **info})
