"""Mask textual inversion's read-out as the official generate_mask.py: threshold and border rule."""

from __future__ import annotations

import numpy as np
import torch

from anomalyforge.diffusion.mask_generation import acceptable, border_ok, rgb_to_mask, threshold_mask
from anomalyforge.diffusion.textual_inversion import PROMPT_TEMPLATES, template_prompt


def test_threshold_is_channel_mean_above_0_8_on_minus_one_to_one():
    x = torch.full((1, 3, 2, 2), -1.0)
    x[0, :, 0, 0] = torch.tensor([0.9, 0.9, 0.9])  # mean 0.9 > 0.8: mask
    x[0, :, 0, 1] = torch.tensor([1.0, 1.0, 0.4])  # mean 0.8, not > 0.8: background
    x[0, :, 1, 0] = torch.tensor([0.7, 0.7, 0.7])  # mean 0.7 (0.5 on [0, 1] would count): background
    x[0, :, 1, 1] = torch.tensor([1.0, 1.0, 0.5])  # mean 0.8333: mask
    (m,) = threshold_mask(x)
    assert m.tolist() == [[255, 0], [0, 255]]
    # the uint8 form: v / 127.5 - 1 > 0.8  <=>  v > 229.5
    img = np.zeros((1, 2, 3), np.uint8)
    img[0, 0], img[0, 1] = 229, 230
    assert rgb_to_mask(img).tolist() == [[0, 255]]


def test_border_rule_one_line_over_a_third():
    m = np.zeros((30, 30), np.uint8)
    m[0, :10] = 255  # 10 = 30/3 pixels on the top line: kept
    assert border_ok(m) and acceptable(m)
    m[0, 10] = 255  # 11 > 10: rejected
    assert not border_ok(m) and not acceptable(m)
    # a texture defect touching the border with a short run on every side is fine (old rule: > 5 % of
    # a 2-px frame rejected it): 8 pixels on each of the four lines
    t = np.zeros((30, 30), np.uint8)
    t[:, 10:18] = 255
    t[10:18, :] = 255
    assert border_ok(t) and acceptable(t)
    assert not acceptable(np.zeros((30, 30), np.uint8))  # empty: rejected (ours)


def test_prompt_templates():
    assert len(PROMPT_TEMPLATES) == 81 and all(t.count("{}") == 1 for t in PROMPT_TEMPLATES)
    assert PROMPT_TEMPLATES[0] == "a photo of a {}" and "an illustration of a {}" in PROMPT_TEMPLATES
    assert template_prompt("<a> <b>") == "a photo of a <a> <b>"
    drawn = {template_prompt("*", np.random.default_rng(s)) for s in range(50)}
    assert len(drawn) > 10 and all("*" in p for p in drawn)
