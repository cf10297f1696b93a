"""Contact sheets of a generation run: see at a glance whether synthetic defects look real.

Per defect type one block of three rows: the good source image, the generated image, and the
generated image with the mask as a red tint and contour; each column is labelled with the pair id.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from anomalyforge.atomic import write_png_atomic
from anomalyforge.data.io import read_image, read_mask
from anomalyforge.errors import ConfigError, DataError
from anomalyforge.formats.manifest import open_run

TILE = 160
LABEL_H = 18
HEADER_H = 24


def overlay(image: np.ndarray, mask: np.ndarray, alpha: float = 0.35) -> np.ndarray:
    """Image with the mask tinted red and outlined (uint8 RGB)."""
    m = mask > 0
    out = image.astype(np.float32)
    out[m] = (1 - alpha) * out[m] + alpha * np.array([255, 0, 0], np.float32)
    out = out.astype(np.uint8)
    contours, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(out, contours, -1, (255, 0, 0), 1)
    return out


def _label(tile: np.ndarray, text: str, height: int, scale: float = 0.4) -> np.ndarray:
    bar = np.full((height, tile.shape[1], 3), 255, np.uint8)
    cv2.putText(bar, text[:100], (3, height - 5), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return np.vstack([bar, tile])


def contact_sheet(run: str | Path, out: str | Path | None = None, per_type: int = 8,
                  require_complete: bool = False) -> Path:
    """Write a PNG contact sheet of up to `per_type` kept pairs per defect type; returns its path.

    Default output: `<run>/preview.png`. An incomplete run is shown with a warning on stderr, or
    refused with `require_complete`.
    """
    run = Path(run)
    if per_type < 1:
        raise ConfigError(f"per_type must be at least 1, got {per_type}")
    opened = open_run(run, require_complete)
    cfg, recs = opened.info, opened.kept
    if not recs:
        raise DataError(run, "run holds no generated pairs yet")
    out = Path(out) if out is not None else run / "preview.png"
    types = list(dict.fromkeys(r.defect_type for r in recs))
    blocks = []
    for t in types:
        chosen = [r for r in recs if r.defect_type == t][:per_type]
        cols = []
        for r in chosen:
            img = read_image(run / r.image, TILE)
            mask = read_mask(run / r.mask, TILE)
            src_path = opened.source(r)
            try:
                if src_path is None:
                    raise DataError(run, "no source")
                src = read_image(src_path, TILE)
            except DataError:  # no source, or it moved: show a grey placeholder rather than fail
                src = np.full_like(img, 128)
            col = np.vstack([src, img, overlay(img, mask)])
            cols.append(_label(col, r.id.removeprefix(f"{t}_"), LABEL_H))
        while len(cols) < per_type:
            cols.append(np.full_like(cols[0], 255))
        body = np.hstack([np.pad(c, ((0, 0), (0, 2), (0, 0)), constant_values=255) for c in cols])
        head = f"{cfg.category} / {t} / {cfg.method}  rows: source, generated, mask"
        blocks.append(_label(body, head, HEADER_H, 0.5))
    sheet = np.vstack([np.pad(b, ((0, 6), (0, 0), (0, 0)), constant_values=255) for b in blocks])
    write_png_atomic(out, sheet)
    return out
