"""Decision thresholds of a delivered model, chosen on TRAINING data only (never the test split).

Image threshold: the smallest image score flagging at most `fpr` of the held-out good training
images (no model trained on them). Pixel threshold, by the first rule that applies:

- `kfold_f1`: with at least `inspect.kfold.MIN_DEFECTS` real few-shot training defects, the
  threshold of best pixel F1 on those defects mapped by k-fold refits that never saw them
  (`inspect.kfold.fold_maps`), pooled with the final model's maps of the held-out good images;
- `good_fpr` (fallback; also when some fold would keep no generated pair): the smallest map value
  flagging at most `fpr` of the held-out good pixels.

`pipelines.train` (the delivered model) and `pipelines.benchmark` (the benchmarked one) both call
`fit_thresholds`, so the thresholds a benchmark reports its verdicts at are the delivered ones.
"""

from __future__ import annotations

import numpy as np

from anomalyforge import metrics as M
from anomalyforge.data.fitdata import FitData
from anomalyforge.errors import ConfigError
from anomalyforge.formats.model import Thresholds
from anomalyforge.inspect.kfold import MIN_DEFECTS, FoldMaps, fold_maps, n_folds
from anomalyforge.inspect.pairs import GeneratedPairs
from anomalyforge.inspect.profiles import Profile
from anomalyforge.inspect.train import MapPredictor
from anomalyforge.metrics import image_scores_from_maps

DEFAULT_FPR = 0.01
REFIT = ("per fold: the supervised localiser, on the generated pairs not pasted from the fold's defects "
         "(profile schedule, `fold_steps` steps when set); reused: backbone features, PatchCore bank and "
         "its standardisation")


def _threshold(values: np.ndarray, fpr: float) -> tuple[float, float]:
    """The smallest value t among `values` with share(values > t) <= fpr, and that share."""
    v = np.sort(np.asarray(values, dtype=np.float64).reshape(-1))
    k = int(np.floor(fpr * len(v)))  # at most k values may lie above t
    t = float(v[len(v) - 1 - k])
    return t, float(np.mean(v > t))


def _check(good_maps: np.ndarray, fpr: float) -> None:
    if not 0.0 <= fpr < 1.0:
        raise ConfigError(f"--fpr must be in [0, 1), got {fpr}")
    if not len(good_maps):
        raise ConfigError("thresholds need held-out good training images; the split has too few good images")


def pooled_pixels(defects: FoldMaps, good_maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The pixels (map values) and labels the k-fold pixel threshold is chosen on: the held-out
    training defects' fold maps pooled with the held-out good images' maps (all negatives)."""
    px = np.concatenate([defects.maps.reshape(-1), good_maps.reshape(-1)])
    gt = np.concatenate([defects.masks.reshape(-1), np.zeros(good_maps.size, bool)])
    return px, gt


def choose_thresholds(good_maps: np.ndarray, pool: int, fpr: float = DEFAULT_FPR,
                      defects: FoldMaps | None = None) -> Thresholds:
    """Image and pixel thresholds from a model's maps of held-out good TRAINING images (see the
    module doc); with `defects` (k-fold maps of the real training defects) the pixel threshold is
    the best-F1 one on those defects and the good maps' pixels. With n held-out images the image
    rate cannot be finer than 1/n: below that the threshold is the largest good score."""
    _check(good_maps, fpr)
    scores = image_scores_from_maps(good_maps, pool)
    t_img, a_img = _threshold(scores, fpr)
    n = len(good_maps)
    img_rule = (f"image: smallest threshold flagging <= {fpr:g} of the {n} held-out good training images "
                f"(image score); no model trained on them")
    if defects is None:
        t_px, a_px = _threshold(good_maps, fpr)
        return Thresholds(image=t_img, pixel=t_px, fpr=float(fpr), n_images=n, n_pixels=int(good_maps.size),
                          image_fpr=a_img, pixel_fpr=a_px, pixel_from="good_fpr",
                          rule=f"{img_rule}; pixel: the same rate of their pixels (map value)")
    px, gt = pooled_pixels(defects, good_maps)
    f1, t = M.f1_max(px, gt)
    # f1_max flags >= t; a mask pixel is > threshold: the next float32 below t (maps are float32, and
    # numpy compares a float32 map with a Python float in float32)
    t_px = float(np.nextafter(np.float32(t), np.float32(-np.inf)))
    k = len(defects.folds)
    n_def = int(sum(f["held_out"] for f in defects.folds))
    return Thresholds(image=t_img, pixel=t_px, fpr=float(fpr), n_images=n, n_pixels=int(good_maps.size),
                      image_fpr=a_img, pixel_fpr=float(np.mean(good_maps > t_px)), pixel_from="kfold_f1",
                      kfold={"k": k, "n_defects": n_def, "f1": float(f1), "folds": defects.folds,
                             "pairs_without_donor": defects.pairs_without_donor, "refit": REFIT},
                      rule=(f"{img_rule}; pixel: best pixel F1 ({f1:.3f}) on the {n_def} real few-shot training "
                            f"defects, each mapped by the {k}-fold refit that saw neither it nor a pair pasted "
                            f"from it, pooled with the {n} held-out good images"))


def fit_thresholds(fit: FitData, train_fit: FitData, goods: np.ndarray, good_maps: np.ndarray,
                   pairs: GeneratedPairs, localizer: MapPredictor, prof: Profile, seed: int, pool: int,
                   fpr: float = DEFAULT_FPR, progress: bool = False) -> tuple[Thresholds, FoldMaps | None]:
    """The thresholds of a trained localiser (see the module doc): k-fold pixel threshold when `fit`
    has at least MIN_DEFECTS few-shot defects, else the good-image fallback; and the k-fold maps
    they were chosen on (None for the fallback: the region classifier learns from them).
    `goods` / `good_maps`: the held-out good images and the final model's maps of them;
    `train_fit`: the goods it trained on."""
    _check(good_maps, fpr)
    k = n_folds(fit)
    if not k:
        out = choose_thresholds(good_maps, pool, fpr)
        out.rule += f" (fewer than {MIN_DEFECTS} few-shot training defects: no k-fold pixel threshold)"
        return out, None
    folds = fold_maps(fit, train_fit, goods, pairs, localizer, prof, seed, k, progress)
    if folds is None:
        out = choose_thresholds(good_maps, pool, fpr)
        out.rule += " (a k-fold split would leave some fold no generated pair: no k-fold pixel threshold)"
        return out, None
    return choose_thresholds(good_maps, pool, fpr, folds), folds


__all__ = ["DEFAULT_FPR", "choose_thresholds", "fit_thresholds", "pooled_pixels"]
