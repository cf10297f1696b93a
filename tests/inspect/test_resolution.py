"""Input size from the few-shot defects' sizes (`inspect.resolution`), on drawn masks and real data."""

from __future__ import annotations

import warnings

import cv2
import numpy as np
import pytest

from anomalyforge.data import few_shot_split, load_dataset, train_masks
from anomalyforge.errors import ConfigError
from anomalyforge.inspect.profiles import get_profile, with_chosen_size
from anomalyforge.inspect.resolution import relative_sides, size_for_defects


def _mask(h: int, w: int, boxes: list[tuple[int, int, int, int]]) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    for y, x, bh, bw in boxes:
        m[y:y + bh, x:x + bw] = 255
    return m


def test_each_component_counts_by_its_share_of_the_image_area():
    m = _mask(100, 100, [(0, 0, 10, 10), (50, 50, 20, 20)])  # two squares: 1 % and 4 % of the area
    np.testing.assert_allclose(sorted(relative_sides(m)), [0.1, 0.2])
    # the share survives the square resize every model applies (a 2:1 image squashed to 64 x 64)
    wide = _mask(100, 200, [(40, 80, 20, 40)])
    squashed = cv2.resize(wide, (64, 64), interpolation=cv2.INTER_NEAREST)
    assert relative_sides(wide)[0] == pytest.approx(relative_sides(squashed)[0], rel=0.05)
    assert relative_sides(np.zeros((8, 8), np.uint8)).size == 0


def test_the_smallest_size_at_which_small_defects_span_a_feature_cell():
    tiny = [_mask(1000, 1000, [(10, 10, 20, 20)])] * 9 + [_mask(1000, 1000, [(0, 0, 400, 400)])]
    c = size_for_defects(tiny)  # 10th percentile: the 2 %-side specks, 5.1 px at 256, 7.7 at 384
    assert (c.size, c.components, c.relative_side) == (512, 10, 0.02)
    assert c.span_px[384] < 8 <= c.span_px[512]
    big = [_mask(1000, 1000, [(0, 0, 100, 100)])] * 10
    assert size_for_defects(big).size == 256  # 25.6 px at 256: no need to grow
    mid = [_mask(1000, 1000, [(0, 0, 25, 25)])] * 10
    assert size_for_defects(mid).size == 384  # 6.4 px at 256, 9.6 at 384
    assert size_for_defects(tiny, ladder=(256, 384)).size == 384  # none passes: the largest
    with pytest.raises(ConfigError, match="no defect pixel"):
        size_for_defects([np.zeros((10, 10), np.uint8)])
    with pytest.raises(ConfigError, match="ladder"):
        size_for_defects(big, ladder=())


def test_profiles_choose_only_with_a_ladder_and_keep_a_size_given_with_set():
    masks = [_mask(1000, 1000, [(0, 0, 25, 25)])]
    cpu, none = with_chosen_size(get_profile("cpu"), masks)
    assert none is None and cpu.size == 256 and "size_ladder" not in cpu.to_dict()
    auto, choice = with_chosen_size(get_profile("auto"), masks)
    assert choice is not None and auto.size == choice.size == 384
    fixed, none = with_chosen_size(get_profile("auto", size=320), masks)
    assert none is None and fixed.size == 320


def test_real_categories_small_defects_grow_the_input(mtile_dir, bottle_dir):
    """Magnetic Tile's few-shot defects include specks of a few pixels (it grows to 384); bottle's
    smallest defects span two feature cells at 256 already."""
    picks = {}
    for name, root in (("magnetic_tile", mtile_dir), ("bottle", bottle_dir)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            split = few_shot_split(load_dataset(root), progress=False)
        picks[name] = size_for_defects(train_masks(split))
    assert picks["magnetic_tile"].size == 384 and picks["magnetic_tile"].span_px[256] < 8
    assert picks["bottle"].size == 256 and picks["bottle"].span_px[256] > 12
