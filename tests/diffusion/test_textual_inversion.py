"""Textual inversion trains only the placeholder vectors; the diffusion model never changes."""

from __future__ import annotations

import pytest
import torch

from anomalyforge.diffusion.masked_loss import masked_diffusion_loss, train_params
from anomalyforge.diffusion.textual_inversion import (
    EmbeddingInjector,
    TokenBank,
    add_placeholder_tokens,
    encode_prompts,
    init_vectors,
    placeholder_names,
    token_positions,
)
from anomalyforge.errors import ConfigError


def _snapshot(*modules):
    return [{k: v.detach().clone() for k, v in m.state_dict().items()} for m in modules]


def test_only_placeholder_vectors_change(ldm, tmp_path):
    te, tok = ldm.text_encoder, ldm.tokenizer
    plain = encode_prompts(te, tok, EmbeddingInjector(te), ["a bottle"], {}, ldm.device).detach()
    names = placeholder_names("crack", 3)
    ids = add_placeholder_tokens(tok, te, names)
    assert len(set(ids)) == 3 and tok.convert_ids_to_tokens(ids) == names
    assert add_placeholder_tokens(tok, te, names) == ids  # idempotent (load after fit)
    injector = EmbeddingInjector(te)
    # ordinary text encodes exactly as before the tokens were added
    assert torch.equal(encode_prompts(te, tok, injector, ["a bottle"], {}, ldm.device), plain)

    g = torch.Generator().manual_seed(0)
    bank = TokenBank()
    bank.add_group("crack", init_vectors(tok, te, "anomaly", 3, g), names)
    start = bank.group("crack").detach().clone()
    before = _snapshot(ldm.unet, ldm.vae, te)
    sched = ldm.make_scheduler("ddpm")
    latents = torch.randn(2, 4, 8, 8, generator=g)
    mask = torch.zeros(2, 1, 8, 8)
    mask[:, :, 2:6, 2:6] = 1
    prompt = " ".join(names)

    def loss(step):
        over = {tid: bank.group("crack")[j] for j, tid in enumerate(ids)}
        cond = encode_prompts(te, tok, injector, [prompt] * 2, over, ldm.device)
        return masked_diffusion_loss(ldm, sched, latents, cond, mask, g)

    losses = train_params([bank.group("crack")], loss, steps=2, lr=5e-3, progress=False)
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))
    assert not torch.equal(bank.group("crack").detach(), start)
    for snap, module in zip(before, (ldm.unet, ldm.vae, te), strict=False):
        assert all(torch.equal(v, module.state_dict()[k]) for k, v in snap.items())
        assert all(p.grad is None for p in module.parameters())
    # the learned vectors are what the encoder sees at the placeholder positions
    pos = token_positions(tok, prompt, names)
    assert pos == [1, 2, 3]

    path = tmp_path / "emb.safetensors"
    bank.save(path)
    back = TokenBank.load(path)
    assert back.groups == ["crack"] and back.token_names["crack"] == names
    assert torch.equal(back.group("crack"), bank.group("crack").detach())
    with pytest.raises(ConfigError, match="no learned embedding for 'scratch'"):
        back.group("scratch")
    with pytest.raises(ConfigError, match="learned embeddings not found"):
        TokenBank.load(tmp_path / "missing.safetensors")
    injector.remove()


def test_per_sample_vectors_are_injected(ldm):
    te, tok = ldm.text_encoder, ldm.tokenizer
    ids = add_placeholder_tokens(tok, te, ["<spatial-test-0>"])
    injector = EmbeddingInjector(te)
    vecs = torch.randn(2, ldm.text_dim, generator=torch.Generator().manual_seed(1))
    out = encode_prompts(te, tok, injector, ["<spatial-test-0>"] * 2, {ids[0]: vecs}, ldm.device)
    same = encode_prompts(te, tok, injector, ["<spatial-test-0>"] * 2, {ids[0]: vecs[[0, 0]]}, ldm.device)
    assert torch.equal(out[0], same[0]) and not torch.allclose(out[1], same[1])
    injector.remove()
