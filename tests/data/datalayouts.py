"""Builders for small synthetic dataset layouts written into tmp_path (tests/data only)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

W, H = 40, 30  # deliberately not square


def write_image(path: Path, size: tuple[int, int] = (W, H), mode: str = "RGB", seed: int = 0) -> Path:
    """A small random image in `mode` (RGB, L, RGBA, I;16, P)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    w, h = size
    if mode == "RGB":
        img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")
    elif mode == "RGBA":
        img = Image.fromarray(rng.integers(0, 256, (h, w, 4), dtype=np.uint8), "RGBA")
    elif mode == "L":
        img = Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8), "L")
    elif mode == "I;16":
        img = Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16))
    elif mode == "P":
        img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB").convert("P")
    else:
        raise ValueError(mode)
    img.save(path)
    return path


def write_mask(path: Path, size: tuple[int, int] = (W, H), box: tuple[int, int, int, int] | None = (5, 5, 15, 12),
               value: int = 255) -> Path:
    """A grey mask with `box` (x0, y0, x1, y1) set to `value`; `box=None` gives an empty mask."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.zeros((size[1], size[0]), np.uint8)
    if box is not None:
        x0, y0, x1, y1 = box
        arr[y0:y1, x0:x1] = value
    Image.fromarray(arr, "L").save(path)
    return path


def make_mvtec(root: Path, types: dict[str, int] | None = None, n_good: int = 4, n_test_good: int = 2) -> Path:
    """An MVTec AD category: train/good, test/good, test/<type>, ground_truth/<type>/NNN_mask.png."""
    types = types or {"scratch": 4, "dent": 3}
    for i in range(n_good):
        write_image(root / "train" / "good" / f"{i:03d}.png", seed=i)
    for i in range(n_test_good):
        write_image(root / "test" / "good" / f"{i:03d}.png", seed=100 + i)
    for t, n in types.items():
        for i in range(n):
            write_image(root / "test" / t / f"{i:03d}.png", seed=200 + i)
            write_mask(root / "ground_truth" / t / f"{i:03d}_mask.png")
    return root


def tree(root: Path) -> list[str]:
    """Every path under `root` (to check that nothing was written)."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))
