"""CropPaste (default method): the real few-shot defects, cut out by their masks and pasted on goods.

Per pair: one training defect of the requested type is drawn, optionally its mask is varied with
GAA mask enhancement (`mask_variation`), a random flip / rotation / scale in [0.8, 1.25] and a
position on the target good image's object are drawn so that the defect stays on the object
(`placement="inside"`; "edge" keeps it touching the object's outline; "same" keeps every defect
where it was). Defects larger than `keep_position_above` of the object always keep their position:
such whole-region anomalies (a wrong fill level, a missing label band) are bound to it. Among
`candidates` valid positions the one whose surroundings look most like the defect's own wins
(a rim defect lands on a rim). The defect's colours are matched to the target: LAB mean/std of
a ring around the defect in its own image are mapped to those of the ring around the target
location, so brightness and tint follow the new place while
the defect's contrast to its surroundings is kept. Edges are feathered (Gaussian alpha on a
slightly dilated mask). The mask is the pasted defect mask after the same transform (grown by the
few feathered pixels that visibly changed).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from anomalyforge.data.fitdata import FitData
from anomalyforge.errors import ConfigError, DataError
from anomalyforge.masks.enhance import EnhanceConfig, enhance_mask
from anomalyforge.masks.placement import place_mask
from anomalyforge.synth.base import register
from anomalyforge.synth.colour import match_lab_stats
from anomalyforge.synth.mf_base import Draft, ModelFreeConfig, ModelFreeGenerator


@dataclass
class CropPasteConfig(ModelFreeConfig):
    """Geometric, colour and edge settings; lengths in px at 256 (scaled with the run size)."""

    scale: tuple[float, float] = (0.8, 1.25)
    rotation: float = 15.0  # degrees, uniform in +-rotation: image orientation usually means
    # something (stripes, lighting, gravity), so defects keep theirs up to flips and small turns
    flip: bool = True
    placement: str = "inside"  # "inside", "edge" or "same"
    colour_match: bool = True
    candidates: int = 8  # positions compared; the one whose surroundings look most like the
    # defect's own surroundings (see _context_score) wins. 1 = uniformly random position
    ring: float = 6.0  # width of the surroundings ring used for colour statistics
    dilate: float = 1.0  # alpha mask dilation before feathering
    feather: float = 1.2  # Gaussian sigma of the alpha edge
    keep_position_above: float = 0.2  # defects larger than this fraction of the object stay where
    # they were (whole-region / logical anomalies such as a wrong fill level cannot move)
    mask_variation: bool = False  # vary each defect's outline with GAA mask enhancement
    max_defect_fraction: float = 0.98  # a defect mask covering more of its image is unusable
    min_on_object: float = 0.98  # a real defect pasted half off the object looks wrong at once


def _ring(mask: np.ndarray, width: float) -> np.ndarray:
    r = max(1, int(round(width)))
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    return (cv2.dilate(mask, k) > 0) & ~(mask > 0)


@register
class CropPaste(ModelFreeGenerator):
    """Real defects cut out by their masks, transformed, colour-matched and pasted on goods."""

    name = "croppaste"
    Config = CropPasteConfig

    @classmethod
    def _check_config(cls, cfg) -> None:
        super()._check_config(cfg)
        if cfg.placement not in ("inside", "edge", "same"):
            raise ConfigError(f"placement {cfg.placement!r}: expected inside, edge or same")
        if cfg.scale[0] <= 0:
            raise ConfigError("scale must be positive")
        if cfg.candidates < 1:
            raise ConfigError("candidates must be at least 1")

    def _fit_extra(self, data: FitData) -> dict:
        if not data.defects or not any(data.defects.values()):
            raise DataError(None, f"category {data.category!r}: croppaste needs training defects with masks")
        size2 = float(data.size * data.size)
        largest_object = float(max((m > 0).sum() for m in self.fg))
        smin = float(self.config.scale[0]) if self.config.placement != "same" else 1.0
        usable: dict[str, list[int]] = {}
        areas: dict[str, float] = {}
        for t, samples in sorted(data.defects.items()):
            ok, sizes, why = [], [], None
            for k, s in enumerate(samples):
                a = float((data.mask(s) > 0).sum())
                if a == 0:
                    why = why or DataError(s.mask, "defect mask is empty")
                elif a > self.config.max_defect_fraction * size2:
                    why = why or DataError(s.mask, f"defect covers {a / size2:.0%} of the image: larger "
                                                   f"than any good image it could be pasted on")
                elif self.config.placement != "same" and a * smin * smin > largest_object * self.config.min_on_object:
                    why = why or DataError(s.mask, f"defect ({a / size2:.0%} of the image) is larger than "
                                                   f"the object in every good image ({largest_object / size2:.0%})")
                else:
                    ok.append(k)
                    sizes.append(a)
            if not ok:
                raise why or DataError(None, f"defect type {t!r} has no usable defects")
            usable[t] = ok
            areas[t] = float(np.mean(sizes))
        self._usable, self._mean_area = usable, areas
        return {"usable": usable, "mean_area": areas}

    def _load_extra(self, data: FitData, state: dict) -> None:
        self._usable = {t: list(v) for t, v in state["usable"].items()}
        self._mean_area = {t: float(v) for t, v in state["mean_area"].items()}

    def _context_score(self, d_img: np.ndarray, src_ring: np.ndarray, img: np.ndarray, fg: np.ndarray):
        """score(placed, transform): how unlike the defect's own surroundings the candidate's are.

        The defect's source image is warped with the candidate transform and compared with the
        target on the ring around the pasted mask, in LAB lightness: mean |difference| after
        removing the mean offset (structure: a rim defect fits a rim, a stripe keeps its
        direction) plus half the mean offset (colour matching corrects that part later)."""
        if not src_ring.any():
            return None
        d_l = cv2.cvtColor(d_img, cv2.COLOR_RGB2LAB)[..., 0].astype(np.float32)
        t_l = cv2.cvtColor(img, cv2.COLOR_RGB2LAB)[..., 0].astype(np.float32)
        ring_px = self._px(self.config.ring)
        pad = int(np.ceil(ring_px)) + 1
        h, w = img.shape[:2]

        def score(placed: np.ndarray, mat: np.ndarray) -> float:
            bx, by, bw, bh = cv2.boundingRect(placed)
            x0, y0 = max(0, bx - pad), max(0, by - pad)
            x1, y1 = min(w, bx + bw + pad), min(h, by + bh + pad)
            ring = _ring(placed[y0:y1, x0:x1], ring_px) & (fg[y0:y1, x0:x1] > 0)
            if not ring.any():
                return np.inf
            m = mat.copy()
            m[:, 2] -= (x0, y0)
            src = cv2.warpAffine(d_l, m, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_REFLECT)[ring]
            diff = src - t_l[y0:y1, x0:x1][ring]
            off = float(diff.mean())
            return float(np.abs(diff - off).mean()) + 0.5 * abs(off)

        return score

    def _draw(self, defect_type: str, rng: np.random.Generator) -> Draft:
        cfg = self.config
        if defect_type not in self._usable:
            raise ConfigError(f"unknown defect type {defect_type!r}; known: {', '.join(sorted(self._usable))}")
        k = self._usable[defect_type][int(rng.integers(len(self._usable[defect_type])))]
        assert self.data is not None  # only called from generate(), which checked it
        sample = self.data.defects[defect_type][k]
        d_img, d_mask = self.data.image(sample), self.data.mask(sample)
        if cfg.mask_variation:
            varied = enhance_mask(d_mask, rng, EnhanceConfig(), self._mean_area[defect_type])
            d_mask = varied if varied.any() else d_mask
        i, img, fg = self._pick_good(rng)
        h, w = img.shape[:2]
        ring_px = self._px(cfg.ring)
        src_ring = _ring(d_mask, ring_px)
        large = (d_mask > 0).sum() > cfg.keep_position_above * max(1, (fg > 0).sum())
        if cfg.placement == "same" or large:
            placed, mat = d_mask.copy(), np.array([[1.0, 0, 0], [0, 1.0, 0]])
        else:
            placed, _, mat = place_mask(d_mask, fg, rng, cfg.placement, rotation=cfg.rotation,
                                        scale=tuple(cfg.scale), flip=cfg.flip, min_inside=cfg.min_on_object,
                                        candidates=cfg.candidates, score=self._context_score(d_img, src_ring, img, fg))
        warped = cv2.warpAffine(d_img, mat, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        r = max(0, int(round(self._px(cfg.dilate))))
        sigma = self._px(cfg.feather)
        # work only on the box around the pasted defect (ring and feathered edge included)
        pad = int(np.ceil(max(self._px(cfg.ring), r + 3 * sigma))) + 2
        bx, by, bw, bh = cv2.boundingRect(placed)
        x0, y0, x1, y1 = max(0, bx - pad), max(0, by - pad), min(w, bx + bw + pad), min(h, by + bh + pad)
        box = (slice(y0, y1), slice(x0, x1))
        p_box, t_box, w_box = placed[box], img[box], warped[box]
        if cfg.colour_match:
            dst_ring = _ring(p_box, ring_px) & (fg[box] > 0)
            w_box = match_lab_stats(w_box, d_img[src_ring], t_box[dst_ring])
        alpha: np.ndarray = p_box.astype(np.float32) / 255.0
        if r:
            alpha = cv2.dilate(alpha, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
        if sigma > 0:
            alpha = cv2.GaussianBlur(alpha, (0, 0), sigma)
        alpha = np.maximum(alpha, p_box > 0)[..., None]
        out = img.copy()
        out[box] = np.clip(np.round(alpha * w_box + (1 - alpha) * t_box), 0, 255).astype(np.uint8)
        grow = r + int(np.ceil(2 * sigma))
        return Draft(out, i, placed, grow, {"defect": str(sample.image), "matrix": np.round(mat, 4).tolist(),
                                            "kept_position": bool(cfg.placement == "same" or large),
                                            "mask_variation": bool(cfg.mask_variation)})
