from pathlib import Path

import numpy as np
import pytest

from anomalyforge.atomic import write_png_atomic
from anomalyforge.data.io import read_image
from anomalyforge.errors import DataError
from anomalyforge.masks.foreground import category_foregrounds, foreground_mask, region_mask_for


def _goods(folder: Path, pattern: str, k: int, size: int = 128) -> list[np.ndarray]:
    return [read_image(p, size) for p in sorted(folder.glob(pattern))[:k]]


def test_bottle_foreground_is_the_bottle(bottle_dir):
    for img in _goods(bottle_dir / "train" / "good", "*.png", 3):
        m = foreground_mask(img) > 0
        assert 0.3 < m.mean() < 0.9
        assert m[64, 64]  # the bottle is centred
        assert not m[:4, :4].any() and not m[-4:, -4:].any()  # corners are background


def test_juice_bottle_foreground_excludes_dark_background(juice_dir):
    masks, texture = category_foregrounds(_goods(juice_dir / "train" / "good", "*.png", 4))
    assert not texture
    for m in masks:
        assert 0.1 < (m > 0).mean() < 0.7
        assert m[64, 64] > 0 and m[0, 0] == 0


def test_magnetic_tile_is_a_texture(mtile_dir):
    masks, texture = category_foregrounds(_goods(mtile_dir / "MT_Free" / "Imgs", "*.jpg", 12))
    assert texture
    assert all(m.min() == 255 for m in masks)


def test_user_region_masks_win_and_bad_folders_are_clear(tmp_path):
    m = np.zeros((32, 32), np.uint8)
    m[8:24, 8:24] = 255
    write_png_atomic(tmp_path / "007.png", m)
    out = region_mask_for("/some/where/007.png", tmp_path, 64)
    assert out.shape == (64, 64) and out[32, 32] == 255 and out[0, 0] == 0
    with pytest.raises(DataError, match="no region mask 008.png"):
        region_mask_for("/x/008.png", tmp_path, 64)
    with pytest.raises(DataError, match="not found"):
        region_mask_for("/x/007.png", tmp_path / "missing", 64)
    write_png_atomic(tmp_path / "009.png", np.zeros((8, 8), np.uint8))
    with pytest.raises(DataError, match="009.png: region mask is empty"):
        region_mask_for("/x/009.png", tmp_path, 64)
