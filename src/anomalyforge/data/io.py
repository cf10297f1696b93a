"""Image and mask reading with clear errors: grey, RGB, RGBA, palette and 16-bit files all load."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from anomalyforge.errors import DataError

Size = int | tuple[int, int] | None  # int -> square (size, size); tuple -> (width, height)


def _wh(size: Size) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, int):
        return (size, size)
    return (int(size[0]), int(size[1]))


def _open(path: str | Path) -> Image.Image:
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    try:
        img = Image.open(path)
        img.load()  # forces decoding: truncated files fail here, not later
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(path, f"cannot read image ({exc.__class__.__name__}: {exc})") from None
    return img


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == bool:
        return arr.astype(np.uint8) * 255
    arr = arr.astype(np.float64)
    hi = 65535.0 if arr.max(initial=0) > 255 else 255.0
    return np.clip(np.round(arr / hi * 255.0), 0, 255).astype(np.uint8)


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of an image file without decoding all of it."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            return img.size
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(path, f"cannot read image ({exc})") from None


def read_image(path: str | Path, size: Size = None) -> np.ndarray:
    """Read any image as uint8 RGB (H, W, 3); resized with area/cubic interpolation when `size` is given."""
    img = _open(path)
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = _to_uint8(np.asarray(img))
    elif img.mode in ("RGBA", "LA", "P", "PA"):
        arr = np.asarray(img.convert("RGBA"))[..., :3] if img.mode != "LA" else np.asarray(img.convert("L"))
    elif img.mode in ("RGB", "L"):
        arr = np.asarray(img)
    else:
        arr = np.asarray(img.convert("RGB"))
    arr = _to_uint8(arr)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    wh = _wh(size)
    if wh is not None and (arr.shape[1], arr.shape[0]) != wh:
        shrink = wh[0] * wh[1] < arr.shape[0] * arr.shape[1]
        arr = cv2.resize(arr, wh, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
    return np.ascontiguousarray(arr)


def read_mask(path: str | Path, size: Size = None, threshold: int = 128,
              expect_size: tuple[int, int] | None = None) -> np.ndarray:
    """Read a mask as uint8 {0, 255} (H, W).

    Any channel layout or bit depth is reduced to one 8-bit channel (max over colour channels),
    then binarised at `threshold` (soft masks such as Magnetic Tile's). `expect_size` (w, h) checks
    that the mask matches its image before any resizing. Resizing uses nearest neighbour on the
    soft mask then re-thresholds, so thin defects survive.
    """
    img = _open(path)
    arr = np.asarray(img.convert("RGBA") if img.mode == "P" else img)
    arr = _to_uint8(arr)
    if arr.ndim == 3:
        arr = arr[..., :3].max(axis=2) if arr.shape[2] >= 3 else arr[..., 0]
    if expect_size is not None and (arr.shape[1], arr.shape[0]) != tuple(expect_size):
        raise DataError(path, f"mask is {arr.shape[1]}x{arr.shape[0]} but its image is "
                              f"{expect_size[0]}x{expect_size[1]}")
    wh = _wh(size)
    if wh is not None and (arr.shape[1], arr.shape[0]) != wh:
        arr = cv2.resize(arr, wh, interpolation=cv2.INTER_AREA)
        # area averaging keeps thin structures as partial values; any coverage >= 1/4 counts
        return np.where(arr >= min(threshold, 64), 255, 0).astype(np.uint8)
    return np.where(arr >= threshold, 255, 0).astype(np.uint8)


def write_png_atomic(path: str | Path, arr: np.ndarray) -> None:
    """Write a PNG so that a reader never sees a half-written file (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    if arr.ndim == 3:
        ok, buf = cv2.imencode(".png", cv2.cvtColor(arr, cv2.COLOR_RGB2BGR))
    else:
        ok, buf = cv2.imencode(".png", arr)
    if not ok:
        raise DataError(path, "PNG encoding failed")
    with open(tmp, "wb") as fh:
        fh.write(buf.tobytes())
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
