"""Loading a diffusers latent diffusion checkpoint: the tiny model, and every bad-input path."""

from __future__ import annotations

import json

import pytest
import torch

from anomalyforge.cli import main
from anomalyforge.diffusion.loading import load_ldm, pick_dtype
from anomalyforge.errors import ConfigError


def test_tiny_model_loads_frozen_fp32_on_cpu(ldm):
    assert ldm.device.type == "cpu" and ldm.dtype == torch.float32
    assert ldm.vae_scale_factor == 4 and ldm.latent_channels == 4 and ldm.text_dim == 32
    for module in (ldm.unet, ldm.vae, ldm.text_encoder):
        assert not any(p.requires_grad for p in module.parameters())
    assert ldm.make_scheduler("ddim").__class__.__name__ == "DDIMScheduler"
    assert ldm.make_scheduler("ddpm").__class__.__name__ == "DDPMScheduler"
    with pytest.raises(ConfigError, match="unknown sampler"):
        ldm.make_scheduler("euler-magic")


def test_precision_rules(monkeypatch):
    # auto never picks fp16 (fitting through an fp16 model without loss scaling does not learn)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert pick_dtype(torch.device("cuda"), "auto") == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert pick_dtype(torch.device("cuda"), "auto") == torch.float32
    assert pick_dtype(torch.device("cuda"), "fp16") == torch.float16
    assert pick_dtype(torch.device("cpu"), "auto") == torch.float32
    assert pick_dtype(torch.device("cuda"), "bf16") == torch.bfloat16
    with pytest.raises(ConfigError):
        pick_dtype(torch.device("cpu"), "fp16")


def test_no_base_model_is_a_clear_error():
    with pytest.raises(ConfigError, match="no base model given.*--base-model"):
        load_ldm(None)


def test_missing_folder_names_it(tmp_path):
    with pytest.raises(ConfigError, match="nope.*not found"):
        load_ldm(str(tmp_path / "nope"))


def test_folder_that_is_not_an_ldm(tmp_path):
    (tmp_path / "unet").mkdir()
    with pytest.raises(ConfigError, match="not a text-conditioned latent diffusion model.*missing vae/"):
        load_ldm(tmp_path)


def test_model_index_of_another_pipeline(tmp_path):
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "DDPMPipeline"}))
    with pytest.raises(ConfigError, match="holds a DDPMPipeline, not a text-conditioned"):
        load_ldm(tmp_path)


def test_uncached_hub_id_offline_says_what_to_download(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ConfigError, match="huggingface-cli download .*--base-model"):
        load_ldm("someone/not-a-cached-model")


def test_cli_make_tiny_model_and_refusal(tmp_path, capsys):
    out = tmp_path / "tiny"
    assert main(["make-tiny-model", str(out)]) == 0
    assert {p.name for p in out.iterdir()} >= {"model_index.json", "unet", "vae", "text_encoder",
                                                "tokenizer", "scheduler"}
    assert load_ldm(out, device="cpu").text_dim == 32
    capsys.readouterr()
    assert main(["make-tiny-model", str(out)]) == 2  # not empty any more: refused, untouched
    err = capsys.readouterr().err.strip()
    assert err.startswith("anomalyforge: error:") and str(out) in err and "\n" not in err
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp leftovers
