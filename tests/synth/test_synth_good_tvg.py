"""TVG's generated goods on real bottle images: torchvision augmentation arms, the variance-aware
generator (offline-fitted VAE, and small random-weight VAE / VQ + CLIP built from configs), the
WordNet keyword-to-prompt generator, and what is said when weights or data are missing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from anomalyforge.data.io import read_image
from anomalyforge.diffusion.autoencoder import AutoencoderFit
from anomalyforge.diffusion.tiny import make_tiny_autoencoder, make_tiny_clip
from anomalyforge.errors import ConfigError
from anomalyforge.synth import keywords
from anomalyforge.synth.good import (
    TORCHVISION_ARMS,
    TorchvisionGoodConfig,
    VaeGoodConfig,
    VaeGoods,
    goods_generator,
    torchvision_goods,
)


@pytest.fixture(scope="module")
def goods(bottle_dir):
    paths = sorted((bottle_dir / "train" / "good").glob("*.png"))[:2]
    return np.stack([read_image(p, 32) for p in paths])


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("tvg_goods")
    return {"kl": make_tiny_autoencoder(root / "kl", "kl"), "vq": make_tiny_autoencoder(root / "vq", "vq"),
            "clip": make_tiny_clip(root / "clip")}


@pytest.mark.parametrize("arm", TORCHVISION_ARMS)
def test_torchvision_arms_are_seeded_nested_and_leave_the_global_rng(goods, arm):
    cfg = TorchvisionGoodConfig(arm)
    state = torch.random.get_rng_state()
    a = torchvision_goods(goods, 6, seed=0, config=cfg)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert a.shape == (6, 32, 32, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a[:4], torchvision_goods(goods, 4, seed=0, config=cfg))
    other = torchvision_goods(goods, 6, seed=1, config=cfg)
    assert any(not np.array_equal(x, y) for x, y in zip(a, other, strict=True))
    assert cfg.to_dict() == {"generator": arm}


def test_bad_goods_config_is_refused(goods):
    with pytest.raises(ConfigError, match="augmentation arm"):
        TorchvisionGoodConfig("mixup")
    with pytest.raises(ConfigError, match="latent sample"):
        VaeGoodConfig(latent="sigma")
    with pytest.raises(ConfigError, match="TVG arm"):
        VaeGoodConfig(arm="sdedit")
    with pytest.raises(ConfigError, match="uint8"):
        torchvision_goods(goods.astype(np.float32), 1, 0, TorchvisionGoodConfig("strategy1"))


def test_offline_vae_goods_say_so_and_are_seeded(goods, capsys):
    cfg = VaeGoodConfig(fit=AutoencoderFit(steps=20, size=32, batch_size=2))
    gen = goods_generator(cfg, "bottle")
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no --vae" in err[0] and "fitted on the K good images" in err[0]
    a = gen(goods, 3, 0)
    assert a.shape == (3, 32, 32, 3) and a.dtype == np.uint8
    b = gen(goods, 3, 0)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 2  # same fit, same noise (float rounding only)
    assert cfg.to_dict()["generator"] == "vae" and cfg.to_dict()["fit"]["steps"] == 20
    # at another image size the small VAE's variation is added to the original: mu alone changes nothing
    big = np.stack([np.kron(g, np.ones((2, 2, 1), np.uint8)) for g in goods])  # 64 px
    mean_only = goods_generator(VaeGoodConfig(latent="mu", fit=AutoencoderFit(steps=5, size=32, batch_size=2)),
                                "bottle")(big, 2, 0)
    assert np.abs(mean_only.astype(int) - big.astype(int)).max() <= 1
    assert np.abs(gen(big, 2, 0).astype(int) - big.astype(int)).mean() > 0.5


@pytest.mark.parametrize("kind", ["kl", "vq"])
def test_tvg_end_to_end_on_small_models(goods, models, kind, capsys):
    base = dict(vae=str(models[kind]), clip=str(models["clip"]), guide_steps=2, keywords=20)
    gen = VaeGoods(VaeGoodConfig(arm="tvg", prompt="a bottle with a cap", **base), "bottle")
    assert capsys.readouterr().err == ""  # every part has weights: nothing skipped
    a = gen.generate(goods, 3, seed=0)
    assert a.shape == (3, 32, 32, 3) and gen.prompts == {0: "a bottle with a cap"}
    plain = VaeGoods(VaeGoodConfig(arm="vae", vae=str(models[kind])), "bottle").generate(goods, 3, seed=0)
    assert np.abs(a.astype(int) - plain.astype(int)).mean() > 0.5  # guidance moved the images
    # the first two variants do not depend on how many are asked for (own noise per variant); the
    # batch's shape changes float rounding only, a level or two after uint8 quantisation
    fewer = VaeGoods(VaeGoodConfig(vae=str(models[kind])), "bottle").generate(goods, 2, seed=0)
    assert np.abs(plain[:2].astype(int) - fewer.astype(int)).max() <= 2
    other = VaeGoods(VaeGoodConfig(vae=str(models[kind])), "bottle").generate(goods, 2, seed=1)
    assert np.abs(fewer.astype(int) - other.astype(int)).mean() > 0.5  # another seed, other noise


def test_tvg_without_clip_says_which_part_is_skipped(goods, models, capsys):
    VaeGoods(VaeGoodConfig(arm="tvg", vae=str(models["kl"])), "bottle")
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "no --clip: keyword-to-prompt and CLIP guidance skipped" in line and "--vae" not in line


def test_wordnet_keywords_and_prompt_choice(goods, models, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    wn = keywords.load_wordnet()
    if wn is None:
        pytest.skip("WordNet data (wordnet-base) not installed")
    words = keywords.candidate_keywords("juice_bottle", 50, wn)  # not in WordNet: its last word, "bottle"
    assert len(words) == 50 and "wine bottle" in words and "bottle" not in words
    assert words == keywords.candidate_keywords("juice_bottle", 50, wn)  # deterministic
    assert keywords.candidate_keywords("magnetic_tile", 10, wn)  # "tile"
    prompts = keywords.prompts_for("juice_bottle", words[:3])
    assert prompts[0] == f"a juice bottle with {words[0]}"
    from anomalyforge.diffusion.blended import to_model_images
    from anomalyforge.diffusion.clip import load_clip

    best, sim = keywords.choose_prompt(to_model_images(list(goods)), prompts, load_clip(models["clip"]))
    assert best in prompts and -1 <= sim <= 1


def test_missing_wordnet_warns_once_and_uses_the_class_name(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ANOMALYFORGE_WORDNET", str(tmp_path))  # an empty folder
    assert keywords.load_wordnet() is None
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("warning: WordNet data not found")
    assert keywords.prompts_for("juice_bottle", keywords.candidate_keywords("juice_bottle", 10, None)) \
        == ["a juice bottle"]
