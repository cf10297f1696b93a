"""Predicting with a trained model, whatever runs it (PyTorch or onnxruntime): no torch here.

`predict_images(model, paths, out)` gathers the images (files, folders, globs), resizes each to the
model's size (as the training data was: area when shrinking, cubic when enlarging; the classifier's
copy by area), runs `model.run` batch by batch, and per image writes a binary mask PNG and a heat-map
overlay PNG at the image's own size, and one row to `predictions.csv` / `.jsonl`
(`formats.predictions`). A model is anything with `info` (`formats.model.ModelInfo`) and
`run(images, cls_images) -> (scores, maps, probs)`.

An image that does not decode stops the call before anything is written (one line naming it);
with `skip_bad` it becomes an error row and the others go on. Re-running into the same folder
resumes: images with an "ok" row are skipped (error rows are tried again).
"""

from __future__ import annotations

import glob
import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
from tqdm.auto import tqdm

from anomalyforge.atomic import check_output_dir, write_png_atomic
from anomalyforge.data.io import is_image_file, read_image, verify_image
from anomalyforge.data.natsort import natural_sorted
from anomalyforge.errors import ConfigError, DataError
from anomalyforge.formats.model import ModelInfo
from anomalyforge.formats.predictions import PredictionRow, read_rows, write_rows


class Runnable(Protocol):
    info: ModelInfo

    def run(self, images: np.ndarray, cls_images: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ...


def gather_images(paths: Sequence[str | Path]) -> list[Path]:
    """Image files named by `paths`: files, folders (their image files, recursively, in natural order)
    or glob patterns; DataError naming a path that matches nothing."""
    out: list[Path] = []
    for p in paths:
        s = str(p)
        if any(c in s for c in "*?[") and not Path(s).exists():
            hits = [Path(h) for h in natural_sorted(glob.glob(s, recursive=True)) if Path(h).is_file()]
            if not hits:
                raise DataError(s, "no file matches this pattern")
            out.extend(hits)
        elif Path(s).is_dir():
            hits = [h for h in natural_sorted(Path(s).rglob("*"), key=str) if h.is_file() and is_image_file(h)]
            if not hits:
                raise DataError(s, "folder holds no image files")
            out.extend(hits)
        elif Path(s).is_file():
            out.append(Path(s))
        else:
            raise DataError(s, "file not found")
    seen: set[str] = set()
    unique = []
    for h in out:
        key = str(h.resolve())
        if key not in seen:
            seen.add(key)
            unique.append(h)
    return unique


def resize_for_model(img: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (size, size, 3), as `data.io.read_image(path, size)` resizes."""
    if img.shape[:2] == (size, size):
        return img
    shrink = size * size < img.shape[0] * img.shape[1]
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)


def resize_for_classifier(img: np.ndarray, size: int) -> np.ndarray:
    """The model-size image at the classifier's size, as `inspect.classify` resizes (area)."""
    return img if img.shape[0] == size else cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)


def heat_overlay(img: np.ndarray, heat: np.ndarray, mask: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """The image with its map in the jet colours (lo = blue, hi = red) blended in and the mask outlined."""
    t = np.clip((heat - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
    colour = cv2.cvtColor(cv2.applyColorMap((t * 255).astype(np.uint8), cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    out = (0.55 * img.astype(np.float32) + 0.45 * colour.astype(np.float32)).astype(np.uint8)
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return cv2.drawContours(np.ascontiguousarray(out), contours, -1, (255, 255, 255), 1)


def output_name(path: Path) -> str:
    """A file name for an input's PNGs, unique per input path and stable across re-runs."""
    digest = hashlib.sha1(str(path.resolve()).encode("utf-8")).hexdigest()[:10]
    return f"{path.stem}-{digest}.png"


def _one_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def predict_images(model: Runnable, paths: Sequence[str | Path], out: str | Path, batch: int = 8,
                   skip_bad: bool = False, progress: bool = False) -> list[PredictionRow]:
    """Predict every image of `paths` into the folder `out` (see the module doc); returns all rows."""
    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        raise ConfigError(f"--batch must be a positive integer, got {batch}")
    out = check_output_dir(Path(out))
    info = model.info
    files = gather_images(paths)
    old = read_rows(out)
    other = [r for r in old if r.model != info.identity]
    if other:
        raise ConfigError(f"{out}: folder holds predictions of another model ({other[0].model}); "
                          f"pick another --out")
    done = {r.path: r for r in old if r.status == "ok"}
    todo = [f for f in files if str(f) not in done]
    bad: dict[str, str] = {}
    for f in todo:  # every input decodes, before anything is written
        try:
            verify_image(f)
        except DataError as exc:
            if not skip_bad:
                raise
            bad[str(f)] = _one_line(exc)
    rows = dict(done)
    order = [str(f) for f in files]
    s, c = info.image_size, info.cls_size
    lo = (info.display_scale or {}).get("lo")
    hi = (info.display_scale or {}).get("hi")
    lo = float(lo) if lo is not None else info.thresholds.pixel
    hi = float(hi) if hi is not None else lo + 1.0
    out.mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(exist_ok=True)
    (out / "overlays").mkdir(exist_ok=True)

    def flush() -> None:
        write_rows(out, [rows[k] for k in order if k in rows])

    for k, err in bad.items():
        rows[k] = PredictionRow(path=k, status="error", model=info.identity, error=err)
    good = [f for f in todo if str(f) not in bad]
    for i in tqdm(range(0, len(good), batch), desc="predict", unit="batch", disable=not progress, leave=False):
        chunk = good[i:i + batch]
        originals, small = [], []
        for f in chunk:
            try:
                img = read_image(f)
            except DataError as exc:  # changed since it was verified
                if not skip_bad:
                    flush()
                    raise
                rows[str(f)] = PredictionRow(path=str(f), status="error", model=info.identity, error=_one_line(exc))
                continue
            originals.append((f, img))
            small.append(resize_for_model(img, s))
        if not originals:
            continue
        x = np.stack(small)
        xc = np.stack([resize_for_classifier(im, c) for im in small]) if c else None
        scores, maps, probs = model.run(x, xc)
        for j, (f, img) in enumerate(originals):
            h, w = img.shape[:2]
            m = maps[j].astype(np.float32)
            full = m if (h, w) == m.shape else cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR)
            mask = full > info.thresholds.pixel
            name = output_name(f)
            write_png_atomic(out / "masks" / name, mask.astype(np.uint8) * 255)
            write_png_atomic(out / "overlays" / name, heat_overlay(img, full, mask, lo, hi))
            score = float(scores[j])
            dtype, prob = None, None
            if probs.shape[1]:
                best = int(np.argmax(probs[j]))
                dtype, prob = info.labels[best], float(probs[j, best])
            rows[str(f)] = PredictionRow(
                path=str(f), score=score, verdict="defect" if score > info.thresholds.image else "good",
                image_threshold=info.thresholds.image, defect_type=dtype, type_prob=prob,
                mask=f"masks/{name}", overlay=f"overlays/{name}", width=w, height=h, model=info.identity)
        flush()
    flush()
    return [rows[k] for k in order if k in rows]
