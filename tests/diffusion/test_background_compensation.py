"""DualAnoDiff's background compensation (BCM) on the tiny random UNet: off at initialisation,
a reference pass before every UNet call, and background information reaching only the whole branch."""

from __future__ import annotations

import pytest
import torch

from anomalyforge.diffusion.background_compensation import BackgroundReference
from anomalyforge.diffusion.dual_attention import DualAdapters, deinterleave


def _inputs(ldm, pairs: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2 * pairs, ldm.latent_channels, 8, 8, generator=g)
    c = torch.randn(2 * pairs, 77, ldm.text_dim, generator=g)
    bg = torch.randn(pairs, ldm.latent_channels, 8, 8, generator=g)
    return x, c, bg, torch.tensor(500)


def _noise(shape):
    """The same noise on every row, so a row's result does not depend on the rows around it."""
    return torch.randn(shape[1:], generator=torch.Generator().manual_seed(5)).expand(shape)


def _run(ldm, adapters, x, c, t, bg=None, uncond=None):
    sched = ldm.make_scheduler("ddpm")
    previous = adapters.install(ldm.unet)
    try:
        with torch.no_grad():
            if bg is None:
                return ldm.unet(x, t, encoder_hidden_states=c).sample
            with BackgroundReference(ldm.unet, adapters.store, sched.add_noise, bg, _noise, uncond):
                return ldm.unet(x, t, encoder_hidden_states=c).sample
    finally:
        ldm.unet.set_attn_processor(previous)


def _bcm_layers(adapters):
    return [layer.background for layer in adapters.values() if layer.background is not None]


def _switch_on(adapters, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for fusion in _bcm_layers(adapters):
            fusion.gate.fill_(0.5)
            for p in fusion.mlp.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)


def test_bcm_sits_on_self_attention_only_and_starts_switched_off(ldm):
    x, c, bg, t = _inputs(ldm)
    plain = DualAdapters.for_unet(ldm.unet, rank=4)
    bcm = DualAdapters.for_unet(ldm.unet, rank=4, background_dim=16)
    self_attn = [n for n, a in ldm.unet.attn_processors.items() if n.endswith("attn1.processor")]
    assert len(_bcm_layers(bcm)) == len(self_attn) > 0 and not plain.has_background and bcm.has_background
    assert all(f.gate.item() == 0.0 for f in _bcm_layers(bcm))
    assert torch.allclose(_run(ldm, bcm, x, c, t, bg), _run(ldm, plain, x, c, t), atol=1e-5)


def test_reference_pass_runs_before_every_call_with_the_whole_rows_prompt(ldm):
    x, c, bg, t = _inputs(ldm)
    adapters = DualAdapters.for_unet(ldm.unet, rank=4, background_dim=16)
    calls = []
    spy = ldm.unet.register_forward_pre_hook(
        lambda m, args, kwargs: calls.append((args[0].shape[0], args[1], kwargs["encoder_hidden_states"])),
        with_kwargs=True)
    try:
        _run(ldm, adapters, x, c, t, bg)
    finally:
        spy.remove()
    # the main call, then the reference pass: the pairs' backgrounds at the same timestep, whole-row prompts
    assert [n for n, _, _ in calls] == [4, 2]
    assert torch.equal(calls[1][1], torch.tensor([500, 500])) and torch.equal(calls[1][2], c[0::2])
    assert adapters.store.mode == "off" and not adapters.store.tokens  # cleared on exit


def test_background_reaches_the_whole_branch_only(ldm):
    x, c, bg, t = _inputs(ldm)
    adapters = DualAdapters.for_unet(ldm.unet, rank=4, interaction=False, background_dim=16)
    _switch_on(adapters, 1)
    a = _run(ldm, adapters, x, c, t, bg)
    b = _run(ldm, adapters, x, c, t, bg + torch.randn(bg.shape, generator=torch.Generator().manual_seed(2)))
    (wa, pa), (wb, pb) = deinterleave(a), deinterleave(b)
    assert (wa - wb).abs().max() > 1e-4  # the whole image depends on its background
    assert torch.allclose(pa, pb, atol=1e-6)  # the part branch never sees it
    bg2 = bg.clone()
    bg2[1] += 1.0  # pair 1's background: pair 0's whole row does not move
    c2 = _run(ldm, adapters, x, c, t, bg2)
    assert torch.allclose(c2[0], a[0], atol=1e-6) and (c2[2] - a[2]).abs().max() > 1e-4

    coupled = DualAdapters.for_unet(ldm.unet, rank=4, background_dim=16)
    _switch_on(coupled, 1)
    with torch.no_grad():
        for layer in coupled.values():
            layer.interaction.out.weight.normal_(0, 0.05, generator=torch.Generator().manual_seed(4))
    u, v = _run(ldm, coupled, x, c, t, bg), _run(ldm, coupled, x, c, t, bg2)
    assert (u[3] - v[3]).abs().max() > 1e-4  # with the interaction the part hears of it through the whole


def test_guidance_rows_take_the_unconditional_backgrounds(ldm):
    x, c, bg, t = _inputs(ldm)
    adapters = DualAdapters.for_unet(ldm.unet, rank=4, background_dim=16)
    _switch_on(adapters, 1)
    grey = torch.zeros_like(bg)
    both = _run(ldm, adapters, torch.cat([x, x]), torch.cat([c, c]), t, bg, uncond=grey)
    # rows [uncond pairs, cond pairs]: the conditional half equals a call with the backgrounds alone
    assert torch.allclose(both[4:], _run(ldm, adapters, x, c, t, bg), atol=1e-5)
    assert torch.allclose(both[:4], _run(ldm, adapters, x, c, t, grey), atol=1e-5)
    with pytest.raises(ValueError, match="6 whole-image rows in the UNet batch, but 2 background latents"):
        _run(ldm, adapters, torch.cat([x, x, x]), torch.cat([c, c, c]), t, bg, uncond=grey)
