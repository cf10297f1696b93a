"""Overlay pictures: the heat map and the ground-truth outline land where they should."""

from __future__ import annotations

import numpy as np

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


def test_mask_overlay_and_normaliser():
    img = np.zeros((32, 32, 3), np.uint8)
    mask = np.zeros((32, 32), bool)
    mask[8:24, 8:24] = True
    out = figures.mask_overlay(img, mask, 32)
    assert out[16, 16, 0] > 100 and out[2, 2].sum() == 0
    maps = np.zeros((4, 8, 8), np.float32)
    maps[0, 0, 0] = 1000.0  # one extreme pixel does not set the colour scale
    maps[1:, :, :4] = 1.0
    lo, hi = figures.normaliser(maps)
    assert lo == 0.0 and hi < 1000.0
    assert figures.normaliser(np.zeros((2, 4, 4))) == (0.0, 1.0)


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
