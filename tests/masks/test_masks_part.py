"""Defect-part images and masks read back from them (DualAnoDiff), on real few-shot defects."""

import numpy as np
import pytest

from anomalyforge.data import few_shot_split, load_dataset
from anomalyforge.data.io import read_image, read_mask
from anomalyforge.masks.part import (
    BACKGROUND_CANDIDATES,
    PART_BACKGROUND,
    background_distance,
    choose_background,
    part_image,
    segment_part,
)
from anomalyforge.masks.placement import iou


def _few_shot(path, size=256):
    split = few_shot_split(load_dataset(path), progress=False)
    return [(read_image(s.image, size), read_mask(s.mask, size)) for ss in split.train_defects.values() for s in ss]


@pytest.fixture(scope="module")
def mtile_defects(mtile_dir):
    return _few_shot(mtile_dir)


def test_part_image_keeps_defect_pixels_and_flattens_the_rest(bottle_dir):
    img, m = _few_shot(bottle_dir)[0]
    part = part_image(img, m, (0, 255, 0))
    assert np.array_equal(part[m > 0], img[m > 0])
    assert (part[m == 0] == (0, 255, 0)).all()


def test_flat_background_reads_back_empty_and_thin_lines_survive():
    flat = np.full((64, 64, 3), PART_BACKGROUND, np.uint8)
    assert not segment_part(flat).any()
    line = flat.copy()
    line[10:50, 30] = (200, 40, 40)  # a one-pixel-wide scratch: no opening may erase it
    got = segment_part(line)
    assert got[10:50, 30].all() and got.sum() // 255 <= 40 * 3
    speck = flat.copy()
    speck[5, 5] = (255, 0, 0)  # smaller than min_area: removed
    assert not segment_part(speck, min_area=0.01).any()


def test_chosen_background_is_far_from_the_defects_colours(mtile_defects):
    pixels = np.concatenate([img[m > 0] for img, m in mtile_defects])
    name, bg = choose_background(pixels)
    assert name != "grey"  # Magnetic Tile is grey: grey would be the worst key
    p1 = {n: np.percentile(background_distance(pixels[None], c), 1) for n, c in BACKGROUND_CANDIDATES.items()}
    assert p1[name] == max(p1.values()) and p1[name] > 20 * p1["grey"]


def test_masks_read_back_from_ideal_parts_match_the_real_masks(mtile_defects, bottle_dir):
    mean_iou = {}
    for name, defects in (("mtile", mtile_defects), ("bottle", _few_shot(bottle_dir))):
        bg = choose_background(np.concatenate([img[m > 0] for img, m in defects]))[1]
        ious = [iou(segment_part(part_image(img, m, bg), bg), m) for img, m in defects]
        assert np.mean(ious) > 0.97 and min(ious) > 0.6, name
        mean_iou[name] = np.mean(ious)
    # the official grey background loses grey defects: that is why the background is chosen
    grey = [iou(segment_part(part_image(img, m)), m) for img, m in mtile_defects]
    assert np.mean(grey) < mean_iou["mtile"] - 0.03
