"""The one atomic writer: a reader never sees a half-written file.

Every file the toolkit writes goes through `write_bytes_atomic`: the bytes go to a hidden temp file
beside the target, are fsynced, and the temp file is renamed over the target (atomic on POSIX and
Windows). A crash leaves either the old file or the new one, plus at most a stray
``.NAME.<random>.tmp``. The temp name is each call's own, so processes writing the same file at
once (shards sharing a run folder) never rename each other's temp file away.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import cv2
import numpy as np

from anomalyforge.errors import ConfigError, DataError

TEMP_NAME = re.compile(r"\.(.+?)(?:\.[0-9a-f]{12})?\.tmp")  # a temp file's name -> the target's name


def temp_path(path: str | Path) -> Path:
    """A new hidden temp file for writing `path` (``.NAME.<12 hex digits>.tmp`` beside it)."""
    p = Path(path)
    return p.with_name(f".{p.name}.{uuid.uuid4().hex[:12]}.tmp")


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


# ---- output folders: checked before anything is written, removed again when a fresh one fails -----
def check_output_dir(out: str | Path, inputs: Sequence[str | Path] = (), flag: str = "--out") -> Path:
    """Refuse an output folder that cannot be one or that lies inside an input folder (ConfigError).

    `out` (existing or not) must not be a file nor lie below one, and must not be, or lie inside,
    any of `inputs` (dataset folders): writing there would change the data every later command
    reads. Returns `out`. Nothing is created.
    """
    out = Path(out)
    for p in (out, *out.parents):
        if p.exists():
            if not p.is_dir():
                where = "exists and is not a folder" if p == out else f"cannot be a folder: {p} is a file"
                raise ConfigError(f"{out}: {flag} {where}")
            break
    real = out.resolve()
    for d in inputs:
        dr = Path(d).resolve()
        if real == dr or dr in real.parents:
            raise ConfigError(f"{out}: {flag} is inside the dataset {d}; writing there would change the data "
                              f"every later command reads; pick a folder outside it")
    return out


def first_missing(path: str | Path) -> Path | None:
    """The topmost folder that creating `path` would create (`path` itself or a parent), or None
    when `path` already exists. Record it before writing, to remove only what a failed call made."""
    path = Path(path)
    if path.exists():
        return None
    top = path
    for p in path.parents:
        if p.exists():
            break
        top = p
    return top


def remove_created(top: Path | None, only_if_empty: bool = False) -> None:
    """Remove the folder `top` that a failed call created (see `first_missing`); with
    `only_if_empty`, only when no file was written under it. A pre-existing folder is never given here."""
    if top is None or not top.is_dir() or top.is_symlink():
        return
    if only_if_empty and any(not p.is_dir() for p in top.rglob("*")):
        return
    shutil.rmtree(top, ignore_errors=True)
