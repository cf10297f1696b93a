"""Logical anomalies without a model: whole components removed, moved, duplicated, swapped, resized, recoloured.

Logical defects (MVTec LOCO: a missing label, a label from another product, a wrong fill level, a
juice of the wrong colour) are not local texture damage, and their ground truth marks the whole
changed component. This generator builds them from the semantic regions of `masks.regions`:

* fit: the first good training image is segmented into regions (or the user's region masks are
  read, `semantic_regions`), and the region map is registered onto every good training image.
  Each few-shot training defect of a type is registered too, and becomes a *template*: the
  regions its mask covers (a region counts when at least `touch` of it is inside the mask), or,
  when it covers no whole region, its own mask (a local part of a component, e.g. a label's text).
  Region choice therefore comes from the few-shot defects' masks only, never from test images.
* per pair: a template of the requested type is drawn, its component U is taken on a drawn good
  image, and one operation of `ops` is applied:
  ``remove`` (U inpainted from its surroundings), ``move`` (U shifted, its old place filled),
  ``duplicate`` (a copy of U pasted beside it), ``swap`` (U replaced by the same component of the
  most different of a few other good images, e.g. a label with another fruit), ``extent`` (U
  stretched or shrunk vertically about its bottom edge, e.g. a fill level) and ``recolour`` (U's
  LAB statistics mapped to those of the same component in the most different other good image,
  else a hue rotation). Components larger than `movable_below` of the object stay in place (only
  remove, swap, extent, recolour).

The mask covers the whole changed component (old and new place, slightly dilated), as MVTec LOCO
annotates logical defects; the shared model-free checks (`mf_base`) then reject empty, unchanged
or off-object drafts and redraw.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from anomalyforge.data.fitdata import FitData
from anomalyforge.errors import ConfigError, DataError
from anomalyforge.masks.regions import (
    BACKGROUND,
    RegionModel,
    propagate,
    reference_regions,
)
from anomalyforge.synth.base import register
from anomalyforge.synth.colour import match_lab_stats
from anomalyforge.synth.mf_base import Draft, ModelFreeConfig, ModelFreeGenerator, Reject

OPS = ("remove", "move", "duplicate", "swap", "extent", "recolour")
REGIONS_FILE = "regions.npz"
_IN_PLACE = ("remove", "swap", "extent", "recolour")


@dataclass
class LogicalConfig(ModelFreeConfig):
    """Which operations, how regions are found and how far components move; lengths at 256 px."""

    ops: str = ",".join(OPS)  # comma-separated subset of remove, move, duplicate, swap, extent, recolour
    touch: float = 0.5  # a few-shot mask "covers" a region when it holds at least this share of it
    region_colours: int = 8  # masks.regions.RegionConfig.n_colours
    semantic_regions: str | None = None  # user regions <region_name>/<good_stem>.png (else automatic;
    # FitData.extra["semantic_regions"] is used when this is not set)
    shift: tuple[float, float] = (0.15, 0.4)  # move / duplicate offset, share of the object's height or width
    extent: tuple[float, float] = (0.55, 0.85)  # extent factor f (shrink) or 1 / f (grow), half each
    movable_below: float = 0.25  # components above this share of the object never move
    partners: int = 8  # other good images compared for swap / recolour (the most different wins)
    min_colour_change: float = 12.0  # recolour: smallest LAB distance to a partner's colour, else hue turn
    dilate: float = 1.5  # px grown around a component so its border lies inside the mask
    inpaint_radius: float = 5.0
    min_changed: float = 0.25  # a whole label swapped for another keeps part of its pixels
    min_on_object: float = 0.9


def _shift(a: np.ndarray, dx: float, dy: float, interp: int = cv2.INTER_NEAREST) -> np.ndarray:
    m = np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]], np.float32)
    return cv2.warpAffine(a, m, (a.shape[1], a.shape[0]), flags=interp, borderMode=cv2.BORDER_CONSTANT)


def _lab_mean(img: np.ndarray, sel: np.ndarray) -> np.ndarray:
    px = img[sel].reshape(-1, 1, 3)
    return cv2.cvtColor(px, cv2.COLOR_RGB2LAB).reshape(-1, 3).astype(np.float32).mean(0)


@register
class Logical(ModelFreeGenerator):
    """Whole components of the few-shot logical defects' regions changed on good images."""

    name = "logical"
    Config = LogicalConfig

    @classmethod
    def _check_config(cls, cfg) -> None:
        super()._check_config(cfg)
        ops = [o.strip() for o in str(cfg.ops).split(",") if o.strip()]
        bad = [o for o in ops if o not in OPS]
        if not ops or bad:
            raise ConfigError(f"ops {cfg.ops!r}: expected a comma list of {', '.join(OPS)}")
        if not 0 < cfg.touch <= 1:
            raise ConfigError(f"touch must be in (0, 1], got {cfg.touch}")
        if not 0 < cfg.extent[0] <= cfg.extent[1] < 1:
            raise ConfigError(f"extent {list(cfg.extent)}: factors must lie in (0, 1)")
        if cfg.region_colours < 2 or cfg.partners < 1:
            raise ConfigError("region_colours must be >= 2 and partners >= 1")

    @property
    def ops(self) -> list[str]:
        return [o.strip() for o in str(self.config.ops).split(",") if o.strip()]

    # ---- fit / load ----------------------------------------------------------------------------
    def _region_model(self, data: FitData) -> RegionModel:
        """The reference regions (`masks.regions.reference_regions`, seed 0)."""
        return reference_regions(data, self.config.region_colours, self.config.semantic_regions, seed=0)

    def _fit_extra(self, data: FitData) -> dict:
        if not data.defects or not any(data.defects.values()):
            raise DataError(None, f"category {data.category!r}: logical needs training defects with masks")
        model = self._region_model(data)
        self.names = list(model.names)
        self.labels = np.stack([propagate(model, data.image(s)).labels for s in data.good]).astype(np.uint8)
        templates: dict[str, list[dict]] = {}
        for t, samples in sorted(data.defects.items()):
            rows = []
            for k, s in enumerate(samples):
                m = data.mask(s) > 0
                if not m.any():
                    continue
                lab = propagate(model, data.image(s)).labels
                covered = [n for i, n in enumerate(self.names) if n != BACKGROUND and (lab == i).any()
                           and (m & (lab == i)).sum() >= self.config.touch * (lab == i).sum()]
                rows.append({"index": k, "regions": covered, "area": round(float(m.mean()), 6)})
            if not rows:
                raise DataError(None, f"defect type {t!r} has no usable defects")
            templates[t] = rows
        self.templates = templates
        return {"names": self.names, "templates": templates}

    def fit(self, data: FitData, state_dir: Path) -> None:
        """Segment, register the good images and few-shot defects, and save regions + templates."""
        super().fit(data, state_dir)
        np.savez_compressed(Path(state_dir) / REGIONS_FILE, labels=self.labels)

    def _load_extra(self, data: FitData, state: dict) -> None:
        self.names = list(state["names"])
        self.templates = {t: list(v) for t, v in state["templates"].items()}

    def load(self, data: FitData, state_dir: Path) -> None:
        """Restore foregrounds, region maps and templates saved by `fit`."""
        super().load(data, state_dir)
        try:
            with np.load(Path(state_dir) / REGIONS_FILE) as z:
                self.labels = z["labels"]
        except (OSError, ValueError, KeyError) as exc:
            raise DataError(Path(state_dir), f"cannot read generator regions ({exc})") from None

    # ---- generation ----------------------------------------------------------------------------
    def _component(self, defect_type: str, i: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
        if defect_type not in self.templates:
            raise ConfigError(f"unknown defect type {defect_type!r}; known: {', '.join(sorted(self.templates))}")
        rows = self.templates[defect_type]
        tpl = rows[int(rng.integers(len(rows)))]
        assert self.data is not None  # only called from generate(), which checked it
        if tpl["regions"]:
            idx = [self.names.index(n) for n in tpl["regions"]]
            comp = np.isin(self.labels[i], idx)
        else:  # a part of a component: the few-shot mask itself (the images are registered products)
            comp = self.data.mask(self.data.defects[defect_type][tpl["index"]]) > 0
        return comp, tpl

    def _partner(self, i: int, comp_of, img: np.ndarray, comp: np.ndarray, rng: np.random.Generator):
        """The most differently coloured of a few other good images (index, image, its component)."""
        assert self.data is not None
        n = len(self.data.good)
        if n < 2:
            raise Reject("no_partner")
        mine = _lab_mean(img, comp)
        best = None
        for _ in range(self.config.partners):
            j = int(rng.integers(n - 1))
            j += j >= i
            cj = comp_of(j)
            if cj.sum() < 0.3 * comp.sum():
                continue
            other = self.data.image(self.data.good[j])
            d = float(np.linalg.norm(_lab_mean(other, cj) - mine))
            if best is None or d > best[0]:
                best = (d, j, other, cj)
        if best is None:
            raise Reject("no_partner")
        return best

    def _draw(self, defect_type: str, rng: np.random.Generator) -> Draft:
        cfg = self.config
        i, img, fg = self._pick_good(rng)
        comp, tpl = self._component(defect_type, i, rng)
        if not comp.any():
            raise Reject("empty")
        obj = max(1, int((fg > 0).sum()))
        ops = self.ops if comp.sum() <= cfg.movable_below * obj else [o for o in self.ops if o in _IN_PLACE]
        if not ops:
            raise Reject("too_large_to_move")
        op = ops[int(rng.integers(len(ops)))]
        r = max(1, int(round(self._px(cfg.dilate))))
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))

        def grown(m: np.ndarray) -> np.ndarray:
            return cv2.dilate(m.astype(np.uint8), k) > 0

        def fill(im: np.ndarray, m: np.ndarray) -> np.ndarray:
            return cv2.inpaint(np.ascontiguousarray(im), grown(m).astype(np.uint8) * 255,
                               self._px(cfg.inpaint_radius), cv2.INPAINT_TELEA)

        params: dict = {"op": op, "regions": list(tpl["regions"]),
                        "template": str(self.data.defects[defect_type][tpl["index"]].image)}  # type: ignore[union-attr]
        u8 = comp.astype(np.uint8)
        if op == "remove":
            out, mask = fill(img, comp), grown(comp)
        elif op in ("move", "duplicate"):
            ys, xs = np.nonzero(fg > 0)
            span = (float(np.ptp(ys)) + 1, float(np.ptp(xs)) + 1) if len(ys) else img.shape[:2]
            ang = float(rng.uniform(0, 2 * np.pi))
            mag = float(rng.uniform(*cfg.shift))
            dx, dy = mag * span[1] * np.cos(ang), mag * span[0] * np.sin(ang)
            new = _shift(u8, dx, dy) > 0
            if new.sum() < 0.9 * comp.sum():
                raise Reject("off_image")
            if op == "duplicate" and (new & comp).sum() > 0.5 * new.sum():
                raise Reject("overlap")
            moved = _shift(img, dx, dy, cv2.INTER_LINEAR)
            out = fill(img, comp) if op == "move" else img.copy()
            out[new] = moved[new]
            mask = grown(new) | (grown(comp) if op == "move" else False)
            params["offset"] = [round(dx, 2), round(dy, 2)]
        elif op == "swap":
            names_idx = ([self.names.index(n) for n in tpl["regions"]] if tpl["regions"] else None)

            def comp_of(j: int) -> np.ndarray:
                return np.isin(self.labels[j], names_idx) if names_idx is not None else comp

            _, j, other, cj = self._partner(i, comp_of, img, comp, rng)
            cy, cx = (np.mean(a) for a in np.nonzero(comp))
            oy, ox = (np.mean(a) for a in np.nonzero(cj))
            dx, dy = float(cx - ox), float(cy - oy)
            new = _shift(cj.astype(np.uint8), dx, dy) > 0
            pasted = _shift(other, dx, dy, cv2.INTER_LINEAR)
            out = fill(img, comp)
            out[new] = pasted[new]
            mask = grown(comp) | grown(new)
            params["partner"] = str(self.data.good[j].image)  # type: ignore[union-attr]
        elif op == "extent":
            ys = np.nonzero(comp)[0]
            y1 = float(ys.max())
            f = float(rng.uniform(*cfg.extent))
            f = f if rng.random() < 0.5 else 1.0 / f
            mat = np.array([[1.0, 0.0, 0.0], [0.0, f, y1 * (1.0 - f)]], np.float32)
            h, w = img.shape[:2]
            new = cv2.warpAffine(u8, mat, (w, h), flags=cv2.INTER_NEAREST) > 0
            stretched = cv2.warpAffine(img, mat, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
            out = fill(img, comp & ~new) if (comp & ~new).any() else img.copy()
            out[new] = stretched[new]
            mask = grown(comp) | grown(new)
            params["factor"] = round(f, 4)
        else:  # recolour
            names_idx = ([self.names.index(n) for n in tpl["regions"]] if tpl["regions"] else None)

            def comp_of(j: int) -> np.ndarray:
                return np.isin(self.labels[j], names_idx) if names_idx is not None else comp

            try:
                d, j, other, cj = self._partner(i, comp_of, img, comp, rng)
            except Reject:
                d, j, other, cj = 0.0, -1, img, comp
            out = img.copy()
            if d >= cfg.min_colour_change:
                out[comp] = match_lab_stats(img, img[comp], other[cj])[comp]
                params["partner"] = str(self.data.good[j].image)  # type: ignore[union-attr]
            else:
                turn = int(rng.integers(30, 151))
                hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV).astype(np.int32)
                hsv[..., 0] = (hsv[..., 0] + turn) % 180
                out[comp] = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)[comp]
                params["hue_turn"] = turn
            mask = comp
        return Draft(np.ascontiguousarray(out), i, np.where(mask, 255, 0).astype(np.uint8), 0, params)
