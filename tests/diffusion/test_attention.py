"""Adaptive attention re-weighting as the official code: dilation schedule, per-cell weights, clipping,
pre-softmax placement inside the UNet. Expected numbers are worked out by hand in the comments."""

from __future__ import annotations

import math

import torch
from diffusers.models.attention_processor import AttnProcessor

from anomalyforge.diffusion.attention import (
    AttentionController,
    aar_weights,
    blend_mask_schedule,
    dilate_latent_mask,
    dilation_radius,
    install_processors,
    make_reweight_hook,
)

FIRST_CROSS = "down_blocks.1.attentions.0.transformer_blocks.0.attn2.processor"


def test_dilation_schedule():
    # r(t) = floor((t + 100) * 8 / 1000)
    assert dilation_radius(0) == 0  # 800 / 1000
    assert dilation_radius(24) == 0  # 992 / 1000
    assert dilation_radius(25) == 1  # 1000 / 1000
    assert dilation_radius(499) == 4  # 4792 / 1000
    assert dilation_radius(999) == 8  # 8792 / 1000
    m = torch.zeros(1, 1, 8, 8)
    m[0, 0, 3, 3] = 1
    d1 = dilate_latent_mask(m, 1)
    assert d1.sum() == 9 and d1[0, 0, 2:5, 2:5].eq(1).all()  # a 3x3 square
    corner = torch.zeros(1, 1, 8, 8)
    corner[0, 0, 0, 0] = 1
    assert dilate_latent_mask(corner, 2).sum() == 9  # 5x5 square cut by the border: 3x3
    assert torch.equal(dilate_latent_mask(m, 0), m)
    # the schedule gives the mask of each timestep
    at = blend_mask_schedule(m)
    assert at(0).sum() == 1 and at(130).sum() == 9 and at(999).sum() == 64  # r = 0, 1, 8 (17x17 > 8x8)


def test_aar_weights_per_cell_normalised_and_clipped():
    # four masked cells in a row, two latent channels; x_t - y0 per cell and channel:
    # cells 0-2: (1, 1) -> d = (1 + 1) / 2 = 1;  cell 3: (0, sqrt(2.4)) -> d = 2.4 / 2 = 1.2
    y0 = torch.zeros(1, 2, 1, 6)
    x = torch.zeros(1, 2, 1, 6)
    x[0, :, 0, 0:3] = 1.0
    x[0, 1, 0, 3] = math.sqrt(2.4)
    x[0, :, 0, 4:6] = 5.0  # outside the mask: ignored however large
    m = torch.zeros(1, 1, 1, 6)
    m[..., 0:4] = 1
    w = aar_weights(x, y0, m)[0, 0, 0]
    # 1/d = (1, 1, 1, 1/1.2); sum = 3 + 5/6 = 23/6; ||M'||_1 = 4
    # w = 4 * (1/d) / (23/6) = (24/23, 24/23, 24/23, 20/23) -> clip to [1, 1.5] -> (24/23, 24/23, 24/23, 1)
    expected = torch.tensor([24 / 23, 24 / 23, 24 / 23, 1.0, 1.0, 1.0])
    assert torch.allclose(w, expected, atol=1e-6)
    # the cases: differences (0.01, 0.1) -> 1/d = (100, 10), w = 2 * (100, 10) / 110 = (1.82, 0.18)
    # -> clipped (1.5, 1): the anomaly attention is never switched off; one region still gets weights
    x2 = torch.tensor([[[[0.1, math.sqrt(0.1)]]]])
    w2 = aar_weights(x2, torch.zeros_like(x2), torch.ones(1, 1, 1, 2))[0, 0, 0]
    assert torch.allclose(w2, torch.tensor([1.5, 1.0]))
    # (150, 50): 1/d = (1/150, 1/50), w = 2 * (1/150, 1/50) / (4/150) = (0.5, 1.5)
    x3 = torch.tensor([[[[math.sqrt(150.0), math.sqrt(50.0)]]]])
    assert torch.allclose(aar_weights(x3, torch.zeros_like(x3), torch.ones(1, 1, 1, 2))[0, 0, 0],
                          torch.tensor([1.0, 1.5]))
    # empty mask, or x_t equal to y0 everywhere: all ones
    assert torch.equal(aar_weights(x, y0, torch.zeros_like(m)), torch.ones_like(m))
    assert torch.equal(aar_weights(y0, y0, m), torch.ones_like(m))


def test_hook_uses_x_t_and_the_dilated_mask():
    m = torch.zeros(1, 1, 8, 8)
    m[0, 0, 4, 4] = 1
    y0 = torch.zeros(1, 4, 8, 8)
    x = torch.zeros(1, 4, 8, 8)
    x[0, :, 3, 3] = 1.0  # inside M' at t = 130 (r = 1): d = 1
    x[0, :, 4, 4] = 2.0  # d = 4
    ctrl = AttentionController(token_positions=[1])
    hook = make_reweight_hook(ctrl, y0, blend_mask_schedule(m))
    hook(0, torch.tensor(130), x, None)
    w = ctrl.weights[0, 0]
    # r(130) = floor(230 * 8 / 1000) = 1: M' = 3x3 (9 cells); two have d > 0: 1/d = (1, 1/4), sum 5/4
    # -> w = 9 * (1, 1/4) / (5/4) = (7.2, 1.8), both clipped to 1.5; every other cell 1
    assert float(w[3, 3]) == 1.5 and float(w[4, 4]) == 1.5
    assert float(w.sum()) == 62 + 3.0
    # r(10) = floor(110 * 8 / 1000) = 0: M' = M, one cell: w = 1 * (1/4) / (1/4) = 1; (3, 3) is outside
    hook(1, torch.tensor(10), x, None)
    assert torch.equal(ctrl.weights, torch.ones(1, 1, 8, 8))


def test_processor_scales_logits_before_softmax(ldm):
    unet = ldm.unet
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 8, 8, generator=g)
    cond = torch.randn(1, 77, ldm.text_dim, generator=g)
    t = torch.tensor([500])
    with torch.no_grad():
        reference = unet(x, t, encoder_hidden_states=cond).sample
    ctrl = AttentionController(token_positions=[1, 2], store=True)
    previous = install_processors(unet, ctrl)
    try:
        with torch.no_grad():
            plain = unet(x, t, encoder_hidden_states=cond).sample
            base_logits = ctrl.last_logits[FIRST_CROSS].clone()
            w = torch.ones(1, 1, 4, 4)  # the first cross-attention layer runs on a 4x4 grid
            w[..., 0:2, 0:2] = 1.5
            w[..., 2:4, 2:4] = 1.2
            ctrl.weights = w
            reweighted = unet(x, t, encoder_hidden_states=cond).sample
            logits = ctrl.last_logits[FIRST_CROSS]
            probs = ctrl.last_probs[FIRST_CROSS]
    finally:
        unet.set_attn_processor(previous)
    assert torch.allclose(plain, reference, atol=1e-5)  # with no weights it is plain attention
    assert not torch.allclose(reweighted, plain)
    heads = logits.shape[0]
    factor = w.reshape(1, 16, 1).expand(heads, 16, 2)
    # the logits of the anomaly tokens are multiplied by W, per query pixel
    assert torch.allclose(logits[:, :, [1, 2]], base_logits[:, :, [1, 2]] * factor, atol=1e-6)
    others = [i for i in range(77) if i not in (1, 2)]
    # other tokens and pixels with W = 1 untouched (up to float rounding: the pass may use other kernels)
    assert torch.allclose(logits[:, :, others], base_logits[:, :, others], rtol=1e-5, atol=1e-7)
    outside = (w.reshape(16) == 1)
    assert torch.allclose(logits[:, outside], base_logits[:, outside], rtol=1e-5, atol=1e-7)
    # ... and the softmax comes after: the probabilities are softmax(W * logits), rows sum to 1
    assert torch.allclose(probs, logits.softmax(-1), atol=1e-6)
    assert torch.allclose(probs.sum(-1), torch.ones(probs.shape[:2]), atol=1e-5)
    assert all(isinstance(p, AttnProcessor) or p.__class__.__name__.startswith("AttnProcessor")
               for p in unet.attn_processors.values())
