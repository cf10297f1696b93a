"""Overlay pictures: the heat map and the ground-truth outline land where they should."""

from __future__ import annotations

import numpy as np
import pytest

from anomalyforge.report import figures


def test_heat_overlay_hot_inside_cold_outside():
    img = np.full((64, 64, 3), 128, np.uint8)
    mask = np.zeros((64, 64), bool)
    mask[16:48, 16:48] = True
    heat = mask.astype(np.float32)
    out = figures.heat_overlay(img, heat, mask, 128)
    assert out.shape == (128, 128, 3) and out.dtype == np.uint8
    inside, outside = out[50:78, 50:78].reshape(-1, 3).mean(0), out[:20, :20].reshape(-1, 3).mean(0)
    assert inside[0] > inside[2] + 40  # jet: high = red
    assert outside[2] > outside[0] + 40  # low = blue
    # the green ground-truth outline sits on the mask border, not in the middle
    green = (out[..., 1] == 255) & (out[..., 0] == 0) & (out[..., 2] == 0)
    assert green[32, 28:36].any() and not green[64, 64]


def test_mask_overlay():
    img = np.zeros((32, 32, 3), np.uint8)
    mask = np.zeros((32, 32), bool)
    mask[8:24, 8:24] = True
    out = figures.mask_overlay(img, mask, 32)
    assert out[16, 16, 0] > 100 and out[2, 2].sum() == 0


def test_good_scale_is_median_and_999th_percentile_of_good_pixels():
    good = np.random.default_rng(0).random((4, 50, 50)).astype(np.float32)
    good[0, 0, 0] = 1000.0  # one extreme pixel does not set the top of the scale
    sc = figures.good_scale(good)
    assert sc["lo"] == pytest.approx(np.median(good)) and sc["hi"] == pytest.approx(np.quantile(good, 0.999))
    assert sc["hi"] < 2.0 and sc["pixels"] == good.size
    flat = figures.good_scale(np.full((2, 4, 4), 0.5))
    assert flat["hi"] > flat["lo"] == 0.5  # flat good maps still give a usable scale
    assert figures.good_scale(np.full((1, 2, 2), np.nan))["lo"] is None


def test_scale_bar_is_a_picture():
    uri = figures.scale_bar(0.25, 0.75, 20)
    assert uri.startswith("data:image/png;base64,")


def _red(px: np.ndarray) -> bool:
    return bool(px[..., 0].mean() > px[..., 2].mean() + 40)  # jet: high = (dark) red


def _blue(px: np.ndarray) -> bool:
    return bool(px[..., 2].mean() > px[..., 0].mean() + 40)  # low = (dark) blue


@pytest.mark.parametrize("hw", [(64, 64), (64, 32), (32, 64)])
def test_asymmetric_heat_map_is_drawn_where_it_is(hw):
    """Issue 21: a transposed or flipped map would put the hot corner elsewhere."""
    h, w = hw
    img = np.full((h, w, 3), 128, np.uint8)
    heat = np.zeros((h, w), np.float32)
    heat[: h // 4, w - w // 4:] = 1.0  # hot in the top-right corner only
    out = figures.heat_overlay(img, heat, None, 128)
    oh, ow = figures._shape(h, w, 128)
    y0, x0 = (128 - oh) // 2, (128 - ow) // 2
    pic = out[y0:y0 + oh, x0:x0 + ow]
    qh, qw = oh // 4, ow // 4
    top, bottom = slice(2, qh - 2), slice(oh - qh + 2, oh - 2)
    left, right = slice(2, qw - 2), slice(ow - qw + 2, ow - 2)
    assert _red(pic[top, right])  # top right: hot
    for rows, cols in ((top, left), (bottom, left), (bottom, right)):
        assert _blue(pic[rows, cols])  # the other three corners: cold


def test_curves_need_both_classes():
    assert figures.roc_pr(np.zeros(10), np.arange(10)) is None
    c = figures.roc_pr(np.arange(10) >= 5, np.arange(10))
    assert c["tpr"][-1] == 1.0 and c["fpr"][0] == 0.0 and c["precision"].max() == 1.0
    assert figures.curves_figure({"a": {"pixel": None, "image": None}}) is None
    assert figures.curves_figure({"a": {"pixel": c, "image": c}}).startswith("data:image/png;base64,")


def test_non_square_pictures_keep_their_aspect():
    img = np.zeros((64, 32, 3), np.uint8)  # tall, like a juice bottle
    mask = np.zeros((64, 32), bool)
    mask[40:60, 4:28] = True
    out = figures.mask_overlay(img, mask, 96)
    assert out.shape == (96, 96, 3)
    assert (out[:, :20] == figures.PAD).all() and (out[:, -20:] == figures.PAD).all()  # side padding
    assert out[75, 48, 0] > 100  # the tint stays at the mask's place (lower middle), not stretched
    assert out[20, 48].sum() == 0
