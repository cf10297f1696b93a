"""Dual-branch attention (DualAnoDiff) on the tiny random UNet: identity at initialisation,
per-branch LoRA, and the interaction that couples exactly the two rows of a pair."""

from __future__ import annotations

import pytest
import torch

from anomalyforge.diffusion.dual_attention import DualAdapters, deinterleave, interleave


def _inputs(ldm, pairs: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2 * pairs, ldm.latent_channels, 8, 8, generator=g)
    c = torch.randn(2 * pairs, 77, ldm.text_dim, generator=g)
    return x, c, torch.tensor(500)


def _run(ldm, adapters, x, c, t):
    previous = adapters.install(ldm.unet) if adapters is not None else None
    try:
        with torch.no_grad():
            return ldm.unet(x, t, encoder_hidden_states=c).sample
    finally:
        if previous is not None:
            ldm.unet.set_attn_processor(previous)


def _randomise(module: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)


def test_untrained_adapters_reproduce_the_pretrained_unet(ldm):
    x, c, t = _inputs(ldm)
    plain = _run(ldm, None, x, c, t)
    adapters = DualAdapters.for_unet(ldm.unet, rank=4)
    assert len(adapters) == len(ldm.unet.attn_processors)
    assert torch.allclose(_run(ldm, adapters, x, c, t), plain, atol=1e-5)
    # install() hands back the UNet's own processors
    assert all(type(p).__name__ != "DualAttnProcessor" for p in ldm.unet.attn_processors.values())


def test_interaction_couples_the_two_rows_of_a_pair_only(ldm):
    x, c, t = _inputs(ldm)
    adapters = DualAdapters.for_unet(ldm.unet, rank=4)
    _randomise(adapters, 1)
    base = _run(ldm, adapters, x, c, t)
    x2 = x.clone()
    x2[1] = torch.randn(x2[1].shape, generator=torch.Generator().manual_seed(9))  # part of pair 0
    moved = _run(ldm, adapters, x2, c, t)
    coupled = (moved[0] - base[0]).abs().max()
    assert coupled > 1e-4  # the whole image of pair 0 sees its part
    # pair 1 is independent: it changes only by float rounding (other batch content may pick
    # other kernels), far below the coupling within a pair
    leak = max((moved[2] - base[2]).abs().max(), (moved[3] - base[3]).abs().max())
    assert leak <= 1e-5 and leak < coupled / 100

    separate = DualAdapters.for_unet(ldm.unet, rank=4, interaction=False)
    _randomise(separate, 1)
    a, b = _run(ldm, separate, x, c, t), _run(ldm, separate, x2, c, t)
    assert torch.allclose(a[0], b[0], atol=1e-6)  # without interaction the branches are separate models


def test_each_branch_has_its_own_lora(ldm):
    x, c, t = _inputs(ldm)
    plain = _run(ldm, None, x, c, t)
    adapters = DualAdapters.for_unet(ldm.unet, rank=4, interaction=False)
    with torch.no_grad():  # only the part branch's (index 1) updates become non-zero
        for layer in adapters.values():
            for proj in (layer.q, layer.k, layer.v, layer.out):
                proj[1].up.weight.normal_(0, 0.05, generator=torch.Generator().manual_seed(3))
    out = _run(ldm, adapters, x, c, t)
    whole, part = deinterleave(out)
    assert torch.allclose(whole, deinterleave(plain)[0], atol=1e-5)
    assert (part - deinterleave(plain)[1]).abs().max() > 1e-4


def test_interleave_round_trip_and_odd_batches(ldm):
    a, b = torch.arange(6.0).view(3, 2), -torch.arange(6.0).view(3, 2)
    both = interleave(a, b)
    assert torch.equal(both[0], a[0]) and torch.equal(both[1], b[0]) and torch.equal(both[5], b[2])
    assert all(torch.equal(u, v) for u, v in zip(deinterleave(both), (a, b), strict=False))
    x, c, t = _inputs(ldm)
    with pytest.raises(ValueError, match="even batch"):
        _run(ldm, DualAdapters.for_unet(ldm.unet, rank=2), x[:3], c[:3], t)
