"""The one atomic writer: a reader never sees a half-written file.

Every file the toolkit writes goes through `write_bytes_atomic`: the bytes go to a hidden temp file
beside the target, are fsynced, and the temp file is renamed over the target (atomic on POSIX and
Windows). A crash leaves either the old file or the new one, plus at most a stray ``.NAME.tmp``.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import cv2
import numpy as np

from anomalyforge.errors import DataError


def temp_path(path: str | Path) -> Path:
    """The hidden temp file `write_*_atomic` uses for `path` (``.NAME.tmp`` beside it)."""
    p = Path(path)
    return p.with_name(f".{p.name}.tmp")


def write_with(path: str | Path, write: Callable[[BinaryIO], Any]) -> Path:
    """Call `write(fh)` on a temp file beside `path`, fsync it, and rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` atomically (temp file, fsync, rename)."""
    return write_with(path, lambda fh: fh.write(data))


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write UTF-8 `text` to `path` atomically."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | Path, obj: Any) -> Path:
    """`obj` as indented JSON, written atomically."""
    return write_bytes_atomic(path, json.dumps(obj, indent=2).encode("utf-8"))


def write_png_atomic(path: str | Path, arr: np.ndarray) -> Path:
    """`arr` (H, W) grey or (H, W, 3) RGB uint8 as a PNG, written atomically."""
    if arr.ndim == 3:
        ok, buf = cv2.imencode(".png", cv2.cvtColor(arr, cv2.COLOR_RGB2BGR))
    else:
        ok, buf = cv2.imencode(".png", arr)
    if not ok:
        raise DataError(path, "PNG encoding failed")
    return write_bytes_atomic(path, buf.tobytes())


def copy_atomic(src: str | Path, dest: str | Path) -> Path:
    """Copy the file `src` to `dest` atomically."""
    with open(src, "rb") as fin:
        return write_with(dest, lambda fh: shutil.copyfileobj(fin, fh))
