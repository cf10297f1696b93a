"""AnomalyDiffusion end to end on the tiny model and real bottle few-shot images (32 px)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from anomalyforge.data.fitdata import FitData
from anomalyforge.diffusion.blended import feather_mask
from anomalyforge.diffusion.spatial_encoder import SpatialEncoder
from anomalyforge.errors import ConfigError
from anomalyforge.synth.anomalydiffusion import AnomalyDiffusion
from anomalyforge.synth.base import get_generator

SIZE = 32  # conftest's image side


def _good_by_path(data: FitData, path: str) -> np.ndarray:
    return data.image(next(s for s in data.good if str(s.image) == path))


def test_registered_with_paper_defaults():
    cls = get_generator("anomalydiffusion")
    c = cls.Config()
    assert cls is AnomalyDiffusion and cls.batch_size > 1
    assert (c.anomaly_tokens, c.spatial_tokens, c.resolution, c.train_batch, c.lr) == (8, 4, None, 4, 5e-3)
    assert (c.mask_guidance, c.sampler, c.mask_source, c.reweight) == (5.0, "ddim", "textual_inversion", "texture")
    assert (c.preset, c.fit_steps, c.sampler_steps) == ("smoke", 5000, 50)  # cheap budgets, labelled
    assert (c.mask_tokens, c.mask_init_word, c.mask_threshold, c.mask_eta, c.eta) == (16, "crack", 0.8, 1.0, 1.0)
    # the published settings as a preset; explicit parameters still win
    p = cls.make_config({"preset": "paper"})
    assert (p.preset, p.fit_steps, p.mask_fit_steps, p.sampler_steps, p.eta, p.resolution) == \
        ("paper", 300_000, 30_000, 200, 1.0, 256)
    assert (p.mask_sampler_steps, p.mask_eta, p.mask_guidance, p.mask_tokens) == (100, 1.0, 5.0, 16)
    assert (p.augment, p.augment_p, p.max_rotation, p.templates) == (True, 0.5, 20.0, True)
    assert cls.make_config({"preset": "paper", "fit_steps": 7}).fit_steps == 7
    with pytest.raises(ConfigError, match="no preset 'fast'"):
        cls.make_config({"preset": "fast"})
    assert cls.make_config({"reweight": True}).reweight == "always"
    with pytest.raises(ConfigError, match="has no parameter"):
        cls.make_config({"fit_stepz": 3})


def test_fit_trains_only_embeddings_and_spatial_encoder(fitted, tiny_model):
    gen, state = fitted
    assert {p.name for p in state.iterdir()} >= {"anomalydiffusion.json", "embeddings.safetensors",
                                                  "spatial_encoder.safetensors"}
    meta = json.loads((state / "anomalydiffusion.json").read_text())
    assert meta["category"] == "bottle" and meta["defect_types"] == ["broken_large", "contamination"]
    # the frozen diffusion model is bit-identical to the checkpoint on disk
    for part, module in (("unet", gen.ldm.unet), ("vae", gen.ldm.vae)):
        disk = load_file(str(tiny_model / part / "diffusion_pytorch_model.safetensors"))
        assert all(torch.equal(v, module.state_dict()[k]) for k, v in disk.items())
    disk = load_file(str(tiny_model / "text_encoder" / "model.safetensors"))
    te = gen.ldm.text_encoder.state_dict()
    for k, v in disk.items():
        got = te[k][: v.shape[0]] if v.shape != te[k].shape else te[k]  # resized table: old rows
        assert torch.equal(v, got), k
    assert not any(p.requires_grad for m in (gen.ldm.unet, gen.ldm.vae, gen.ldm.text_encoder)
                   for p in m.parameters())
    # the anomaly embeddings and the spatial encoder moved away from their initialisation
    torch.manual_seed(gen.config.seed)
    init = SpatialEncoder(4, gen.ldm.text_dim, "tiny", None, 16).state_dict()
    trained = gen.spatial.state_dict()
    assert any(not torch.equal(init[k], trained[k]) for k in init if init[k].is_floating_point())
    assert gen.bank.group("broken_large").shape == (8, gen.ldm.text_dim)
    assert all(np.isfinite(v).all() for v in gen.losses.values())


def test_generate_pairs_keep_good_pixels_outside_dilated_mask(fitted, bottle_data):
    gen, _ = fitted
    pairs = gen.generate("broken_large", [3, 4])
    assert len(pairs) == 2
    c = gen.config
    for p in pairs:
        assert p.image.shape == (SIZE, SIZE, 3) and p.image.dtype == np.uint8
        assert p.mask.shape == (SIZE, SIZE) and set(np.unique(p.mask)) == {0, 255}
        good = _good_by_path(bottle_data, p.source)
        outer = feather_mask(p.mask, c.dilate_px + c.feather_px, 0) > 0
        assert np.array_equal(p.image[~outer], good[~outer])
        assert not np.array_equal(p.image[p.mask > 0], good[p.mask > 0])
        assert p.params["mask_from"] in ("textual_inversion", "synthesis")
        assert p.params["reweight"] is False  # bottle is an object: AAR off ("texture", as the official code)


def test_save_load_generate_is_identical(fitted, bottle_data):
    gen, state = fitted
    first = gen.generate("contamination", [11, 12])
    other = AnomalyDiffusion(dataclasses.replace(gen.config))
    other.load(bottle_data, state)
    again = other.generate("contamination", [11, 12])
    for a, b in zip(first, again, strict=False):
        assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask) and a.source == b.source
    assert not np.array_equal(first[0].image, first[1].image)


def test_synthesis_masks_without_reweighting(fitted, bottle_data, ad_config):
    gen, state = fitted
    other = AnomalyDiffusion(ad_config(mask_source="synthesis", reweight="never"))
    other.load(bottle_data, state)
    (p,) = other.generate("broken_large", [5])
    assert p.params["mask_from"] == "synthesis" and p.mask.any()


def test_bad_inputs(fitted, bottle_data, ad_config, tmp_path):
    gen, state = fitted
    with pytest.raises(ConfigError, match="'scratch' was not fitted"):
        gen.generate("scratch", [0])
    other_cat = FitData(category="hazelnut", size=SIZE, defects=bottle_data.defects, good=bottle_data.good)
    with pytest.raises(ConfigError, match="fitted on category 'bottle', not 'hazelnut'"):
        AnomalyDiffusion(ad_config()).load(other_cat, state)
    with pytest.raises(ConfigError, match="no anomalydiffusion state here"):
        AnomalyDiffusion(ad_config()).load(bottle_data, tmp_path)
    with pytest.raises(ConfigError, match="no base model given"):
        AnomalyDiffusion(ad_config(base_model=None)).fit(bottle_data, tmp_path / "s")
    not_ldm = tmp_path / "not_ldm"
    not_ldm.mkdir()
    with pytest.raises(ConfigError, match="not a text-conditioned latent diffusion model"):
        AnomalyDiffusion(ad_config(base_model=str(not_ldm))).fit(bottle_data, tmp_path / "s")
    with pytest.raises(ConfigError, match="mask_source"):
        AnomalyDiffusion(ad_config(mask_source="magic")).fit(bottle_data, tmp_path / "s")
    with pytest.raises(ConfigError, match="fitted with anomaly_tokens=8"):
        AnomalyDiffusion(ad_config(anomaly_tokens=2)).load(bottle_data, state)
    with pytest.raises(ConfigError, match="resolution 36 must be a multiple of 8"):
        AnomalyDiffusion(ad_config(resolution=36)).fit(bottle_data, tmp_path / "s")
    assert not (tmp_path / "s").exists()  # nothing half-written by the failed fits


def test_generate_with_attention_reweighting(fitted, bottle_data, ad_config):
    gen, state = fitted
    other = AnomalyDiffusion(ad_config(reweight="always", mask_source="synthesis"))
    other.load(bottle_data, state)
    (p,) = other.generate("broken_large", [7])
    assert p.params["reweight"] is True and p.params["eta"] == 1.0 and p.mask.any()
    assert all(not type(v).__name__.startswith("Reweighting") for v in other.ldm.unet.attn_processors.values())
