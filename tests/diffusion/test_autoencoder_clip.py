"""TVG's model parts on small random-weight models built from configs: loading an AutoencoderKL /
VQModel / CLIPModel from a folder, the latent's mean and spread, the three latent samples, the
offline VAE fitted on real bottle goods, and CLIP guidance."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from anomalyforge.data.io import read_image
from anomalyforge.diffusion.autoencoder import AutoencoderFit, fit_autoencoder, load_autoencoder, sample_latent
from anomalyforge.diffusion.blended import to_model_images
from anomalyforge.diffusion.clip import load_clip, refine_latent
from anomalyforge.diffusion.tiny import make_tiny_autoencoder, make_tiny_clip
from anomalyforge.errors import ConfigError


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("tvg_models")
    return {"kl": make_tiny_autoencoder(root / "kl", "kl"), "vq": make_tiny_autoencoder(root / "vq", "vq"),
            "clip": make_tiny_clip(root / "clip")}


@pytest.fixture(scope="module")
def goods(bottle_dir):
    paths = sorted((bottle_dir / "train" / "good").glob("*.png"))[:2]
    return np.stack([read_image(p, 32) for p in paths])


@pytest.mark.parametrize("kind", ["kl", "vq"])
def test_autoencoder_loads_and_gives_mean_and_spread(models, kind, goods):
    ae = load_autoencoder(models[kind])
    assert (ae.kind, ae.factor) == (kind, 4)
    x = to_model_images(list(goods))
    with torch.no_grad():
        mu, sigma = ae.stats(x)
        assert mu.shape == sigma.shape == (2, 4, 8, 8) and bool((sigma >= 0).all()) and float(sigma.mean()) > 0
        g = torch.Generator().manual_seed(0)
        z = {m: sample_latent(mu, sigma, m, 1.0, g) for m in ("mu", "mu+sigma", "mu+sigma*eps")}
        assert torch.equal(z["mu"], mu) and torch.allclose(z["mu+sigma"], mu + sigma)
        assert not torch.equal(z["mu+sigma*eps"], mu)
        assert torch.equal(sample_latent(mu, sigma, "mu+sigma*eps", 0.0, g), mu)  # temperature 0: the mean
        assert ae.decode(z["mu+sigma*eps"]).shape == (2, 3, 32, 32)
    if kind == "vq":  # decoded through the codebook: latents in one code's cell decode alike
        q = ae.model.quantize(mu)[0]
        assert torch.allclose(ae.decode(mu), ae.decode(q), atol=1e-5)
    with pytest.raises(ConfigError, match="latent sample"):
        sample_latent(mu, sigma, "mu*2", 1.0, None)


def test_autoencoder_found_in_a_pipeline_folder_and_bad_folders_refused(models, tmp_path):
    pipe = tmp_path / "pipe"
    pipe.mkdir()
    (pipe / "vqvae").symlink_to(models["vq"], target_is_directory=True)
    assert load_autoencoder(pipe).kind == "vq"
    with pytest.raises(ConfigError, match="no diffusers AutoencoderKL or VQModel"):
        load_autoencoder(models["clip"])  # a CLIP folder is no autoencoder
    with pytest.raises(ConfigError, match="folder not found"):
        load_autoencoder(tmp_path / "missing")


def test_offline_vae_fitted_on_good_images_reconstructs_them(goods):
    x = to_model_images(list(goods))
    cfg = AutoencoderFit(steps=40, size=32, batch_size=2)
    ae = fit_autoencoder(goods, seed=0, config=cfg)
    assert ae.source == "offline-fitted" and ae.kind == "kl"
    with torch.no_grad():
        mu, sigma = ae.stats(x)
        err = {m: float((ae.decode(sample_latent(mu, sigma, m, 1.0, torch.Generator().manual_seed(1))) - x)
                        .abs().mean()) for m in ("mu", "mu+sigma")}
    assert err["mu"] < 0.5  # far below an untrained decoder's error on [-1, 1] images (about 1)
    assert err["mu"] < err["mu+sigma"]  # a whole sigma up moves the image away (TVG's ablation)
    again = fit_autoencoder(goods, seed=0, config=cfg)
    with torch.no_grad():  # seeded: the same weights up to float rounding
        assert torch.allclose(again.stats(x)[0], mu, atol=1e-3)
    assert ae.size == 32
    with pytest.raises(ConfigError, match="size a multiple of 4"):
        AutoencoderFit(size=30)


def test_clip_loads_scores_and_guidance_raises_similarity(models, goods):
    clip = load_clip(models["clip"])
    text = clip.text_embeddings(["a bottle with cap", "a bottle"])
    assert text.shape == (2, 32) and torch.allclose(text.norm(dim=-1), torch.ones(2), atol=1e-5)
    ae = load_autoencoder(models["kl"])
    with torch.no_grad():
        z0 = ae.stats(to_model_images(list(goods)))[0]

    def sim(z):
        with torch.no_grad():
            return float((clip.image_embeddings(ae.decode(z)) @ text[0]).mean())

    z = refine_latent(z0, ae.decode, clip, text[0], steps=5, lr=0.05, anchor=0.0)
    assert sim(z) > sim(z0)
    assert torch.equal(refine_latent(z0, ae.decode, clip, text[0], steps=0), z0)
    with pytest.raises(ConfigError, match="folder not found"):
        load_clip(models["clip"].parent / "nope")
