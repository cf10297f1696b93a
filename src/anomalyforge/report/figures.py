"""Pictures for the HTML report: heat-map overlays, mask overlays and ROC/PR curves as PNG data URIs.

Matplotlib is used through its object API with the Agg canvas (no pyplot, no global backend
change), so building a report never opens a window or touches other code's figures.
"""

from __future__ import annotations

import base64
import io

import cv2
import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from anomalyforge import metrics

HEAT_CMAP = "jet"
GT_COLOUR = (0, 255, 0)  # ground-truth contour, RGB
MASK_COLOUR = np.array([255, 40, 40], dtype=np.float32)  # generated-mask tint, RGB
MAX_CURVE_POINTS = 1500  # points drawn per curve; the curve shape is unchanged at report size


def png_data_uri(rgb: np.ndarray) -> str:
    """uint8 RGB (H, W, 3) or grey (H, W) array -> 'data:image/png;base64,...'."""
    arr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) if rgb.ndim == 3 else rgb
    ok, buf = cv2.imencode(".png", arr, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 array
        raise ValueError("PNG encoding failed")
    return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


def placeholder(height: int, width: int) -> np.ndarray:
    """Grey crossed-out picture shown where an image file is missing."""
    out = np.full((height, width, 3), 128, np.uint8)
    cv2.line(out, (0, 0), (width - 1, height - 1), (160, 160, 160), 1)
    cv2.line(out, (0, height - 1), (width - 1, 0), (160, 160, 160), 1)
    return out


PAD = 255  # letterbox colour: the page background


def _shape(h: int, w: int, size: int) -> tuple[int, int]:
    """Display (height, width) with the longest side = `size`, aspect ratio kept."""
    scale = size / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def _resize_to(arr: np.ndarray, hw: tuple[int, int], nearest: bool = False) -> np.ndarray:
    if arr.shape[:2] == hw:
        return arr
    shrink = hw[0] * hw[1] < arr.shape[0] * arr.shape[1]
    interp = cv2.INTER_NEAREST if nearest else (cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return cv2.resize(arr, (hw[1], hw[0]), interpolation=interp)


def letterbox(rgb: np.ndarray, size: int) -> np.ndarray:
    """`size` x `size` RGB tile: the picture scaled to fit, centred, padded with the page colour."""
    h, w = _shape(rgb.shape[0], rgb.shape[1], size)
    out = np.full((size, size, 3), PAD, np.uint8)
    y, x = (size - h) // 2, (size - w) // 2
    out[y:y + h, x:x + w] = _resize_to(rgb, (h, w))
    return out


def draw_contour(rgb: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int] = GT_COLOUR) -> np.ndarray:
    """Copy of `rgb` with the outline of the boolean `mask` (same H, W) drawn on it."""
    out = np.ascontiguousarray(rgb.copy())
    m = mask.astype(np.uint8)
    if m.any():
        contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(out, contours, -1, colour, max(1, max(out.shape[:2]) // 128))
    return out


def image_with_contour(rgb: np.ndarray, mask: np.ndarray | None, size: int) -> np.ndarray:
    """Tile of an image with the ground-truth outline (mask has the image's or any other shape)."""
    hw = _shape(rgb.shape[0], rgb.shape[1], size)
    img = _resize_to(rgb, hw)
    if mask is not None:
        img = draw_contour(img, _resize_to(mask.astype(np.uint8), hw, nearest=True) > 0)
    return letterbox(img, size)


def heat_overlay(rgb: np.ndarray, heat: np.ndarray, mask: np.ndarray | None, size: int,
                 alpha: float = 0.5) -> np.ndarray:
    """Tile of the image blended with a colour-mapped heat map in [0, 1], GT outline on top.

    Everything is brought to the heat map's aspect ratio (the one the model saw) first.
    """
    hw = _shape(heat.shape[0], heat.shape[1], size)
    img = _resize_to(rgb, hw).astype(np.float32)
    h = np.clip(_resize_to(heat.astype(np.float32), hw), 0.0, 1.0)
    col = colormaps[HEAT_CMAP](h)[..., :3].astype(np.float32) * 255.0
    out = np.clip((1 - alpha) * img + alpha * col, 0, 255).astype(np.uint8)
    if mask is not None:
        out = draw_contour(out, _resize_to(mask.astype(np.uint8), hw, nearest=True) > 0)
    return letterbox(out, size)


def mask_overlay(rgb: np.ndarray, mask: np.ndarray, size: int, alpha: float = 0.45) -> np.ndarray:
    """Tile of the image with the boolean mask tinted red and outlined: a generated pair's alignment."""
    hw = _shape(rgb.shape[0], rgb.shape[1], size)
    img = _resize_to(rgb, hw).astype(np.float32)
    m = _resize_to(mask.astype(np.uint8), hw, nearest=True) > 0
    img[m] = (1 - alpha) * img[m] + alpha * MASK_COLOUR
    return letterbox(draw_contour(img.astype(np.uint8), m, (255, 255, 0)), size)


SCALE_TOP = 0.999  # quantile of the good pixels' scores drawn as the top of the heat scale


def good_scale(good_maps: np.ndarray) -> dict:
    """The heat-map scale of one model, anchored at the good-image level: {"lo", "hi", "pixels"}.

    `good_maps` are the model's maps of good TRAINING images it never trained on (never test
    images). lo = the median of their pixel scores (drawn as 0: a typical good pixel is blue),
    hi = their 99.9th percentile (drawn as 1: one good pixel in a thousand reaches red). Every
    method gets the same definition, so the colours mean the same on every method's maps.
    """
    flat = np.asarray(good_maps, dtype=np.float64).reshape(-1)
    flat = flat[np.isfinite(flat)]
    if flat.size == 0:
        return {"lo": None, "hi": None, "pixels": 0}
    lo, hi = float(np.median(flat)), float(np.quantile(flat, SCALE_TOP))
    if hi <= lo:  # flat maps on the goods: any score above the good level is drawn hot
        hi = lo + max(abs(lo) * 1e-3, 1e-6)
    return {"lo": lo, "hi": hi, "pixels": int(flat.size)}


def scale_bar(lo: float, hi: float, n_images: int | None, width: float = 6.4) -> str:
    """PNG data URI of the heat-map colour bar with what 0 and 1 are (written on the figure)."""
    fig = Figure(figsize=(width, 0.75))
    ax = fig.add_axes((0.01, 0.36, 0.98, 0.3))
    ax.imshow(np.linspace(0, 1, 256)[None, :], aspect="auto", cmap=HEAT_CMAP, extent=(0, 1, 0, 1))
    ax.set_yticks([])
    ax.set_xticks([0, 0.5, 1], [f"0 = {lo:.4g} (good median)", "0.5", f"1 = {hi:.4g} (good 99.9 %)"], fontsize=8)
    ticks = ax.get_xticklabels()
    ticks[0].set_horizontalalignment("left")  # keep the end labels inside the picture
    ticks[-1].set_horizontalalignment("right")
    ax.tick_params(axis="x", length=2, pad=2)
    goods = f"{n_images} held-out good training images" if n_images else "held-out good training images"
    ax.set_title(f"heat scale: 0 = median, 1 = 99.9th percentile of the pixel scores of {goods} "
                 "(no test image)", fontsize=7.5, loc="left")
    return _fig_uri(fig, dpi=100)


def roc_pr(labels: np.ndarray, scores: np.ndarray) -> dict | None:
    """ROC (fpr, tpr) and PR (recall, precision) points for drawing; None if one class only.

    Uses anomalyforge.metrics' plot-ready curves (exact points, thinned along the curve).
    """
    y = np.asarray(labels).reshape(-1).astype(bool)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if y.all() or not y.any():
        return None
    roc = metrics.roc_curve(s, y, max_points=MAX_CURVE_POINTS)
    pr = metrics.pr_curve(s, y, max_points=MAX_CURVE_POINTS)
    return {"fpr": roc.fpr, "tpr": roc.tpr, "recall": pr.recall, "precision": pr.precision,
            "prevalence": float(y.mean())}


def _fig_uri(fig: Figure, dpi: int = 90) -> str:
    FigureCanvasAgg(fig)  # attach an Agg canvas: no pyplot, no global backend
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def curves_figure(curves: dict[str, dict[str, dict | None]], title_suffix: str = "") -> str | None:
    """PNG data URI of ROC and PR panels at pixel and image level.

    `curves` maps a series name (a method) to {"pixel": roc_pr(...), "image": roc_pr(...)},
    with the legend text in key "label" of each curve dict when given.
    """
    if not any(c for per in curves.values() for c in per.values()):
        return None
    fig = Figure(figsize=(13.5, 3.4))
    axes = fig.subplots(1, 4)
    panels = [("pixel", "roc", "Pixel ROC"), ("pixel", "pr", "Pixel PR"),
              ("image", "roc", "Image ROC"), ("image", "pr", "Image PR")]
    cmap = colormaps["tab10"]
    for ax, (level, kind, title) in zip(axes, panels, strict=False):
        for i, (name, per) in enumerate(curves.items()):
            c = per.get(level)
            if not c:
                continue
            label = c.get(f"label_{kind}", name)
            if kind == "roc":
                ax.plot(c["fpr"], c["tpr"], color=cmap(i % 10), lw=1.6, label=label)
            else:
                ax.plot(c["recall"], c["precision"], color=cmap(i % 10), lw=1.6, label=label)
        if kind == "roc":
            ax.plot([0, 1], [0, 1], color="0.7", lw=0.8, ls="--")
            ax.set_xlabel("false positive rate")
            ax.set_ylabel("true positive rate")
        else:
            ax.set_xlabel("recall")
            ax.set_ylabel("precision")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_title(title + title_suffix, fontsize=10)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="lower right" if kind == "roc" else "lower left")
    # fixed margins: tight_layout would draw the figure twice
    fig.subplots_adjust(left=0.045, right=0.99, bottom=0.16, top=0.91, wspace=0.28)
    return _fig_uri(fig)
