"""Adaptive attention re-weighting: eq. 7 on hand-made cases, eq. 8 inside the UNet."""

from __future__ import annotations

import math

import numpy as np
import torch
from diffusers.models.attention_processor import AttnProcessor

from anomalyforge.diffusion.attention import (
    AttentionController,
    install_processors,
    mask_regions,
    region_weights,
    weight_map,
)

FIRST_CROSS = "down_blocks.1.attentions.0.transformer_blocks.0.attn2.processor"


def test_eq7_on_hand_made_differences():
    w = region_weights(torch.tensor([1.0, 2.0]))
    e1, e2 = math.exp(1.0), math.exp(0.5)  # f(d) = 1/d
    assert torch.allclose(w, torch.tensor([2 * e1 / (e1 + e2), 2 * e2 / (e1 + e2)]))
    assert torch.allclose(region_weights(torch.tensor([0.0, 4.0])), torch.tensor([0.0, 2.0]))  # f(0) = -inf
    assert torch.allclose(region_weights(torch.tensor([3.0])), torch.tensor([1.0]))
    w3 = region_weights(torch.tensor([0.5, 1.0, 8.0]))
    assert math.isclose(float(w3.sum()), 3.0, rel_tol=1e-6) and w3[0] > w3[1] > w3[2]


def test_weight_map_favours_the_least_filled_region():
    mask = np.zeros((16, 16), np.uint8)
    mask[2:5, 2:5] = 255  # region A: 9 px
    mask[9:14, 9:14] = 255  # region B: 25 px
    assert [int(r.sum()) for r in mask_regions(mask)] == [25, 9]
    y = torch.zeros(1, 3, 16, 16)
    x0 = torch.zeros(1, 3, 16, 16)
    x0[..., 2:5, 2:5] = 0.1  # A barely differs from the good image: least filled
    x0[..., 9:14, 9:14] = 1.0
    wmap = weight_map([mask], y, x0)
    d_a, d_b = 9 * 3 * 0.01, 25 * 3 * 1.0
    sa, sb = math.exp(1 / d_a), math.exp(1 / d_b)
    assert torch.allclose(wmap[0, 0, 3, 3], torch.tensor(2 * sa / (sa + sb)))
    assert torch.allclose(wmap[0, 0, 10, 10], torch.tensor(2 * sb / (sa + sb)))
    assert wmap[0, 0, 3, 3] > 1 > wmap[0, 0, 10, 10]
    assert torch.all(wmap[0, 0][mask == 0] == 1)


def test_processor_reweights_anomaly_tokens_inside_the_mask_only(ldm):
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
            base = ctrl.last_probs[FIRST_CROSS].clone()
            w = torch.ones(1, 1, 4, 4)  # the first cross-attention layer runs on a 4x4 grid
            w[..., 0:2, 0:2] = 1.8
            w[..., 2:4, 2:4] = 0.2
            ctrl.weights = w
            reweighted = unet(x, t, encoder_hidden_states=cond).sample
            probs = ctrl.last_probs[FIRST_CROSS]
    finally:
        unet.set_attn_processor(previous)
    assert torch.allclose(plain, reference, atol=1e-5)  # with no weights it is plain attention
    assert not torch.allclose(reweighted, plain)
    heads = probs.shape[0]
    factor = w.reshape(1, 16, 1).expand(heads, 16, 2)
    assert torch.allclose(probs[:, :, [1, 2]], base[:, :, [1, 2]] * factor, atol=1e-6)
    others = [i for i in range(77) if i not in (1, 2)]
    # other tokens and pixels outside the mask untouched (up to float rounding: the reweighted
    # pass may use other kernels; the reweighting itself changes probabilities by up to 80 %)
    assert torch.allclose(probs[:, :, others], base[:, :, others], rtol=1e-5, atol=1e-7)
    outside = (w.reshape(16) == 1)
    assert torch.allclose(probs[:, outside], base[:, outside], rtol=1e-5, atol=1e-7)
    assert all(isinstance(p, AttnProcessor) or p.__class__.__name__.startswith("AttnProcessor")
               for p in unet.attn_processors.values())
