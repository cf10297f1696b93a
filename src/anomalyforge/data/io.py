"""Image and mask reading with clear errors: grey, RGB, RGBA, palette and 16-bit files all load."""

from __future__ import annotations

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


IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def is_image_file(path: str | Path) -> bool:
    """True for a visible file whose extension is a known image type (case-insensitive)."""
    path = Path(path)
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".") and path.is_file()


def mask_parts(folder: str | Path) -> list[Path]:
    """The region-mask files of a per-image mask folder (MVTec LOCO layout), sorted by name."""
    folder = Path(folder)
    parts = sorted(p for p in folder.iterdir() if is_image_file(p))
    if not parts:
        raise DataError(folder, "mask folder holds no mask images")
    return parts


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of an image file without decoding all of it.

    A folder is read as a per-image folder of region masks (MVTec LOCO): all its masks must have
    the same size, which is returned.
    """
    path = Path(path)
    if path.is_dir():
        sizes = {p: image_size(p) for p in mask_parts(path)}
        first = next(iter(sizes.values()))
        for p, wh in sizes.items():
            if wh != first:
                raise DataError(p, f"region mask is {wh[0]}x{wh[1]} but the other masks in its "
                                   f"folder are {first[0]}x{first[1]}")
        return first
    try:
        with Image.open(path) as img:
            return img.size
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(path, f"cannot read image ({exc})") from None


def verify_image(path: str | Path) -> tuple[int, int]:
    """Decode a whole image (or every mask of a mask folder) to catch truncated or corrupt files.

    Returns (width, height). Slower than `image_size`; used by `info` to check a dataset.
    """
    path = Path(path)
    if path.is_dir():
        for p in mask_parts(path):
            verify_image(p)
        return image_size(path)
    with _open(path) as img:
        return img.size


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


LABEL_MAP_MAX = 31  # masks whose values are all <= this (and few) are class-id label maps


def _mask_levels(path: Path) -> np.ndarray:
    """One uint8 channel (H, W) of a mask file: max over colour channels, 16-bit scaled to 8-bit."""
    img = _open(path)
    arr = np.asarray(img.convert("RGBA") if img.mode == "P" else img)
    arr = _to_uint8(arr)
    if arr.ndim == 3:
        arr = arr[..., :3].max(axis=2) if arr.shape[2] >= 3 else arr[..., 0]
    return arr


def _binary_levels(arr: np.ndarray, threshold: int) -> np.ndarray:
    """Soft mask -> {0, 255} at `threshold`; a class-id label map (values 0..k, k small) -> non-zero."""
    top = int(arr.max(initial=0))
    if is_label_map(np.unique(arr).size, top, threshold):
        return np.where(arr > 0, 255, 0).astype(np.uint8)
    return np.where(arr >= threshold, 255, 0).astype(np.uint8)


def mask_levels(path: str | Path) -> tuple[tuple[int, int], int, int]:
    """((width, height), distinct grey levels, highest level) of a mask, decoded as `read_mask`
    reduces it (one 8-bit channel); a mask folder gives the most levels of its parts. More than
    two levels means a soft or multi-class mask that `read_mask` binarises."""
    path = Path(path)
    if path.is_dir():
        infos = [mask_levels(p) for p in mask_parts(path)]
        return image_size(path), max(i[1] for i in infos), max(i[2] for i in infos)
    arr = _mask_levels(path)
    hist = np.bincount(arr.ravel(), minlength=256)
    return (arr.shape[1], arr.shape[0]), int(np.count_nonzero(hist)), int(arr.max(initial=0))


def is_label_map(levels: int, top: int, threshold: int) -> bool:
    """True for a class-id label map (values 0..k, k small): `read_mask` counts every non-zero pixel."""
    return 0 < top < threshold and top <= LABEL_MAP_MAX and levels <= 16


def read_mask(path: str | Path, size: Size = None, threshold: int = 128,
              expect_size: tuple[int, int] | None = None) -> np.ndarray:
    """Read a mask as uint8 {0, 255} (H, W).

    Any channel layout or bit depth is reduced to one 8-bit channel (max over colour channels),
    then binarised at `threshold` (soft masks such as Magnetic Tile's). A label map whose values
    are all small class ids (0..k with k <= 31, as VisA ships its masks) counts every non-zero
    pixel, since thresholding it would erase every defect. A folder is a per-image folder of
    region masks (MVTec LOCO): each is binarised and they are OR-ed into one mask.
    `expect_size` (w, h) checks that the mask matches its image before any resizing. Resizing
    uses area averaging on the binary mask then re-thresholds, so thin defects survive.
    """
    path = Path(path)
    if path.is_dir():
        parts = mask_parts(path)
        arr = None
        for p in parts:
            part = _binary_levels(_mask_levels(p), threshold)
            if arr is not None and part.shape != arr.shape:
                raise DataError(p, f"region mask is {part.shape[1]}x{part.shape[0]} but the other "
                                   f"masks in its folder are {arr.shape[1]}x{arr.shape[0]}")
            arr = part if arr is None else np.maximum(arr, part)
        assert arr is not None  # mask_parts() raises on a folder without masks
    else:
        levels = _mask_levels(path)
        top = int(levels.max(initial=0))
        arr = levels if top >= threshold or top == 0 else _binary_levels(levels, threshold)
        if arr is not levels:
            threshold = 128  # already binary {0, 255}
    if expect_size is not None and (arr.shape[1], arr.shape[0]) != tuple(expect_size):
        raise DataError(path, f"mask is {arr.shape[1]}x{arr.shape[0]} but its image is "
                              f"{expect_size[0]}x{expect_size[1]}")
    wh = _wh(size)
    if wh is not None and (arr.shape[1], arr.shape[0]) != wh:
        arr = cv2.resize(arr, wh, interpolation=cv2.INTER_AREA)
        # area averaging keeps thin structures as partial values; any coverage >= 1/4 counts
        return np.where(arr >= min(threshold, 64), 255, 0).astype(np.uint8)
    return np.where(arr >= threshold, 255, 0).astype(np.uint8)
