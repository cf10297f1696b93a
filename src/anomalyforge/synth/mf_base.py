"""What every model-free generator shares: object foregrounds, the draw/validate/redraw loop.

A subclass implements `_draw(defect_type, rng) -> Draft` (one attempt). This base turns drafts
into valid pairs: the mask is made to cover exactly the changed pixels (changes just outside the
proposed mask, e.g. feathered edges, are added to it when within `grow` px and on the object;
anything else is reverted to the good image), then a draft is rejected when its mask is empty,
mostly unchanged pixels, or off the object; a rejected draft is redrawn with the derived seed
[seed, attempt] (the count is the pair's `redraws` param, the reasons `rejected_because`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from anomalyforge.data.fitdata import FitData
from anomalyforge.errors import ConfigError, DataError
from anomalyforge.masks.foreground import ForegroundConfig, decide_category, foreground_mask, region_mask_for
from anomalyforge.masks.placement import NoPlacement
from anomalyforge.seeds import numpy_rng
from anomalyforge.synth.base import Generator, Pair

STATE_FILE = "state.json"
FG_FILE = "foreground.npz"
_WORKERS = min(4, os.cpu_count() or 1)
_DIFFUSION_KEYS = ("base_model", "fit_steps", "sampler_steps", "device")


@dataclass
class ModelFreeConfig:
    """Validation knobs common to every model-free generator."""

    region_dir: str | None = None  # user region masks (<stem>.png per good image); None = segment
    # (FitData.extra["region_dir"] is used when this is not set)
    min_on_object: float = 0.95  # fraction of the mask that must lie on the object foreground
    diff_threshold: int = 8  # a pixel "changed" when any channel differs by more than this (0-255)
    min_changed: float = 0.5  # fraction of mask pixels that must have changed
    min_area: float = 0.0002  # smallest mask, as a fraction of the image area
    max_redraws: int = 40  # drafts tried per seed before giving up with a clear error


class Reject(Exception):
    """A draft that cannot become a valid pair (empty, off the object...)."""


@dataclass
class Draft:
    image: np.ndarray  # uint8 RGB
    source_index: int  # index into the good images
    mask: np.ndarray  # proposed mask uint8 {0,255}
    grow: int = 0  # px around the mask where changes are still accepted into it
    params: dict[str, Any] = field(default_factory=dict)


class ModelFreeGenerator(Generator):
    """Base of cutpaste, cutpaste-scar, perlin, nsa and croppaste."""

    Config = ModelFreeConfig
    batch_size = 16

    @classmethod
    def make_config(cls, overrides: dict[str, Any] | None = None) -> Any:
        bad = sorted(set(overrides or {}) & set(_DIFFUSION_KEYS))
        if bad:
            raise ConfigError(f"method {cls.name!r} is model-free and takes no {', '.join(bad)} "
                              f"(options for diffusion methods)")
        cfg = super().make_config(overrides)
        cls._check_config(cfg)
        return cfg

    @classmethod
    def _check_config(cls, cfg: Any) -> None:
        """Type-check every value against its default (ranges are [low, high] pairs)."""
        num = (int, float)
        for f in dataclasses.fields(cfg):
            v, d = getattr(cfg, f.name), f.default
            bad = None
            if isinstance(d, tuple):
                if not (isinstance(v, (list, tuple)) and len(v) == 2
                        and all(isinstance(x, num) and not isinstance(x, bool) for x in v)):
                    bad = "a [low, high] pair of numbers"
                elif all(isinstance(x, int) for x in d) and not all(isinstance(x, int) for x in v):
                    bad = "a [low, high] pair of integers"
                elif v[0] > v[1]:
                    raise ConfigError(f"parameter {f.name}={list(v)}: lower bound above upper bound")
            elif isinstance(d, bool):
                bad = None if isinstance(v, bool) else "true or false"
            elif isinstance(d, int):
                bad = None if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else "an integer >= 0"
            elif isinstance(d, float):
                bad = None if isinstance(v, num) and not isinstance(v, bool) and v >= 0 else "a number >= 0"
            elif d is None or isinstance(d, str):
                bad = None if v is None or isinstance(v, str) else "a string"
            if bad:
                raise ConfigError(f"parameter {f.name}={v!r}: expected {bad}")
        if not 0 <= cfg.min_on_object <= 1 or not 0 <= cfg.min_changed <= 1:
            raise ConfigError("min_on_object and min_changed must lie in [0, 1]")
        if cfg.max_redraws < 1:
            raise ConfigError("max_redraws must be at least 1")

    # ---- state ---------------------------------------------------------------------------------
    def fit(self, data: FitData, state_dir: Path) -> None:
        """Segment every good image (or read the user's region masks) and save them."""
        self.data = data
        if not data.good:
            raise DataError(None, f"category {data.category!r} has no good training images")
        region_dir = self.config.region_dir or data.extra.get("region_dir")
        if region_dir:
            masks = [region_mask_for(s.image, region_dir, data.size) for s in data.good]
            texture = False
        else:
            fcfg = ForegroundConfig()
            with ThreadPoolExecutor(max_workers=_WORKERS) as pool:  # OpenCV/PIL release the GIL
                masks = list(tqdm(pool.map(lambda s: foreground_mask(data.image(s), fcfg), data.good),
                                  total=len(data.good), desc=f"{data.category}: object masks", unit="img",
                                  file=sys.stderr, leave=False, disable=not data.extra.get("progress", False)))
            masks, texture = decide_category(masks)
        self.fg = np.stack(masks)
        self.texture = texture
        extra = self._fit_extra(data)
        state_dir = Path(state_dir)
        state_dir.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(state_dir / FG_FILE, masks=self.fg)
        state = {"method": self.name, "good": [str(s.image) for s in data.good], "texture": texture,
                 "size": data.size, **extra}
        (state_dir / STATE_FILE).write_text(json.dumps(state, indent=1))

    def load(self, data: FitData, state_dir: Path) -> None:
        """Restore foregrounds (and the subclass's state) saved by `fit`."""
        state_dir = Path(state_dir)
        try:
            state = json.loads((state_dir / STATE_FILE).read_text())
            with np.load(state_dir / FG_FILE) as z:
                self.fg = z["masks"]
        except (OSError, ValueError, KeyError) as exc:
            raise DataError(state_dir, f"cannot read generator state ({exc})") from None
        if state.get("good") != [str(s.image) for s in data.good] or state.get("size") != data.size:
            raise ConfigError(f"{state_dir}: saved state was fitted on other good images or size")
        self.data = data
        self.texture = bool(state["texture"])
        self._load_extra(data, state)

    def _fit_extra(self, data: FitData) -> dict:
        return {}

    def _load_extra(self, data: FitData, state: dict) -> None:
        pass

    # ---- generation ----------------------------------------------------------------------------
    def _draw(self, defect_type: str, rng: np.random.Generator) -> Draft:
        raise NotImplementedError

    def _finalize(self, d: Draft) -> tuple[np.ndarray, np.ndarray]:
        """Make the mask cover exactly the changed pixels, or raise Reject."""
        cfg = self.config
        assert self.data is not None  # generate() checked it
        src = self.data.image(self.data.good[d.source_index])
        img = d.image
        prop = d.mask > 0
        fg = self.fg[d.source_index] > 0
        changed = np.abs(img.astype(np.int16) - src.astype(np.int16)).max(axis=2) > cfg.diff_threshold
        if d.grow > 0:  # the feathered rim joins the mask, but never spills onto the background
            k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * d.grow + 1, 2 * d.grow + 1))
            near = cv2.dilate(prop.astype(np.uint8), k) > 0
            mask = prop | (changed & near & fg)
        else:
            mask = prop
        n = int(mask.sum())
        if n < max(4, cfg.min_area * mask.size):
            raise Reject("empty")
        if (changed & mask).sum() < cfg.min_changed * n:
            raise Reject("unchanged")
        if (mask & fg).sum() < cfg.min_on_object * n:
            raise Reject("off_object")
        out = np.where(mask[..., None], img, src).astype(np.uint8)
        return out, mask.astype(np.uint8) * 255

    def generate(self, defect_type: str, seeds: Sequence[int]) -> list[Pair]:
        if self.data is None:
            raise ConfigError(f"generator {self.name!r} used before fit/load")
        pairs = []
        for seed in seeds:
            reasons: dict[str, int] = {}
            for attempt in range(self.config.max_redraws):
                rng = numpy_rng(seed, attempt)
                try:
                    d = self._draw(defect_type, rng)
                    img, mask = self._finalize(d)
                except NoPlacement:
                    reasons["no_placement"] = reasons.get("no_placement", 0) + 1
                    continue
                except Reject as r:
                    reasons[str(r)] = reasons.get(str(r), 0) + 1
                    continue
                params = {**d.params, "redraws": attempt, "rejected_because": reasons}
                pairs.append(Pair(img, mask, str(self.data.good[d.source_index].image), params))
                break
            else:
                raise ConfigError(
                    f"method {self.name!r}: no valid {defect_type!r} pair after {self.config.max_redraws} "
                    f"draws (seed {seed}; reasons {reasons}); the object may be too small for the "
                    f"defects - pass region masks (region_dir) or relax min_on_object")
        return pairs

    # ---- helpers for subclasses ----------------------------------------------------------------
    def _pick_good(self, rng: np.random.Generator) -> tuple[int, np.ndarray, np.ndarray]:
        assert self.data is not None  # only called from generate(), which checked it
        i = int(rng.integers(len(self.data.good)))
        return i, self.data.image(self.data.good[i]), self.fg[i]

    def _px(self, v: float) -> float:
        """A length given at 256 px, at this run's size."""
        assert self.data is not None  # only called from generate(), which checked it
        return v * self.data.size / 256.0
