"""TAB pieces: prompts, text features (seeded prototypes; a small random CLIP text tower built
from a config with a tokenizer written here), the loss, one training epoch, and the stage-weights
file the detectors load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from anomalyforge.errors import ConfigError
from anomalyforge.features.backbone import BackboneSpec, FeatureExtractor
from anomalyforge.features.tab import (
    ABNORMAL_STATES,
    NORMAL_STATES,
    TEMPLATES,
    TabEncoder,
    class_name_of,
    clip_text_features,
    orthonormal_prototypes,
    sentences,
    tab_config,
    tab_loss,
    train_epoch,
)


def test_prompt_lists_are_the_papers_and_compose_template_state_class():
    assert (len(TEMPLATES), len(NORMAL_STATES), len(ABNORMAL_STATES)) == (20, 8, 17)
    normal, abnormal = sentences("juice bottle", True), sentences("juice bottle", False)
    assert len(normal) == 160 and len(abnormal) == 340 and len(set(normal + abnormal)) == 500
    assert "a photo of a good juice bottle." in normal
    assert "an industrial photo of the juice bottle with scratch." in abnormal
    assert class_name_of("juice_bottle") == "juice bottle" and class_name_of("bottle") == "bottle"


def test_orthonormal_prototypes_are_seeded_and_orthonormal():
    p = orthonormal_prototypes(3, 16, seed=4)
    flat = p.reshape(6, 16).double()
    assert p.shape == (3, 2, 16)
    assert torch.allclose(flat @ flat.T, torch.eye(6, dtype=torch.float64), atol=1e-5)
    assert torch.equal(p, orthonormal_prototypes(3, 16, seed=4))
    assert not torch.equal(p, orthonormal_prototypes(3, 16, seed=5))
    with pytest.raises(ConfigError, match="at least 2 x classes"):
        orthonormal_prototypes(9, 16, seed=0)


def test_loss_is_low_when_each_image_meets_its_class_and_state():
    text = orthonormal_prototypes(2, 8, seed=0)  # (2 classes, 2 states, 8)
    cn, ca = torch.tensor([0, 1]), torch.tensor([1, 0])
    right = tab_loss(text[cn, 0], cn, text[ca, 1], ca, text, tau=14.0)
    swapped = tab_loss(text[cn, 1], cn, text[ca, 0], ca, text, tau=14.0)  # normal looks abnormal
    assert float(right) < 0.01 < 5 < float(swapped)


def _write_clip_folder(folder: Path, projection: bool) -> Path:
    """A small random CLIP text tower + a tokenizer whose vocabulary is written here."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    folder.mkdir(parents=True)
    letters = list("abcdefghijklmnopqrstuvwxyz")
    vocab = ["<|startoftext|>", "<|endoftext|>", "<unk>", *letters, *(c + "</w>" for c in letters), ".</w>", "-</w>"]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77)
    cfg = CLIPTextConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=37, num_attention_heads=4,
                         num_hidden_layers=2, max_position_embeddings=77, projection_dim=24,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    model = (CLIPTextModelWithProjection if projection else CLIPTextModel)(cfg)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def test_clip_text_features_from_a_local_folder(tmp_path):
    folder = _write_clip_folder(tmp_path / "clip", projection=True)
    feats, ident = clip_text_features(str(folder), ["bottle", "juice bottle"])
    assert feats.shape == (2, 2, 24)
    assert torch.allclose(feats.norm(dim=-1), torch.ones(2, 2), atol=1e-5)
    assert not torch.allclose(feats[0, 0], feats[0, 1])  # the state words change the sentence feature
    assert ident["kind"] == "clip" and ident["embedding"] == "text_embeds" and len(ident["files_sha256"]) == 64
    again, _ = clip_text_features(str(folder), ["bottle", "juice bottle"])
    assert torch.allclose(feats, again)


def test_clip_text_model_without_projection_in_a_pipeline_folder_uses_pooled_output(tmp_path):
    root = tmp_path / "sd"
    src = _write_clip_folder(tmp_path / "plain", projection=False)
    (root / "text_encoder").mkdir(parents=True)
    (root / "tokenizer").mkdir()
    for f in src.iterdir():
        dest = "tokenizer" if "token" in f.name or f.name in ("vocab.json", "merges.txt") else "text_encoder"
        (root / dest / f.name).write_bytes(f.read_bytes())
    feats, ident = clip_text_features(str(root), ["tile"])
    assert feats.shape == (1, 2, 32) and ident["embedding"] == "pooler_output"


def test_unloadable_text_encoder_is_one_config_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="text encoder .* cannot be loaded.*--text-encoder none"):
        clip_text_features(str(tmp_path / "empty"), ["bottle"])


def test_one_epoch_trains_the_stages_keeps_batchnorm_statistics_and_round_trips_through_a_file(tmp_path):
    from safetensors.torch import save_file

    cfg = tab_config("smoke", init=None, size=40, crop=32)
    torch.manual_seed(0)
    model = TabEncoder(cfg.arch, None, 8)
    before = {k: v.clone() for k, v in model.stages.state_dict().items()}
    rng = np.random.default_rng(0)
    normal = rng.integers(0, 255, (6, 40, 40, 3), dtype=np.uint8)
    anomal = rng.integers(0, 255, (6, 40, 40, 3), dtype=np.uint8)
    cls = np.array([0, 0, 0, 1, 1, 1])
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss = train_epoch(model, opt, normal, cls, anomal, cls, orthonormal_prototypes(2, 8, 0), cfg,
                       torch.Generator().manual_seed(0), torch.device("cpu"))
    after = model.stages.state_dict()
    assert np.isfinite(loss)
    assert any(not torch.equal(before[k], after[k]) for k in before if k.endswith("weight"))
    assert all(torch.equal(before[k], after[k]) for k in before if "running" in k)  # BN statistics kept
    path = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in after.items()}, str(path))
    fx = FeatureExtractor(BackboneSpec(weights=str(path), levels=(4,))).eval()
    x = torch.rand(1, 3, 32, 32)
    model.eval()
    assert torch.allclose(fx(x)[0], model.extractor(x)[0], atol=1e-5)
    save_file({"stem.0.weight": torch.zeros(1)}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ConfigError, match="bad.safetensors: backbone weights do not fit"):
        FeatureExtractor(BackboneSpec(weights=str(tmp_path / "bad.safetensors")))


def test_tab_config_checks_its_settings():
    assert tab_config("cpu").crop == 224 and tab_config("paper").epochs == 200
    with pytest.raises(ConfigError, match="unknown pretraining profile"):
        tab_config("huge")
    with pytest.raises(ConfigError, match="no setting"):
        tab_config("smoke", nope=1)
    with pytest.raises(ConfigError, match="crop"):
        tab_config("smoke", crop=80)


def test_a_torchvision_resnet18_encoder_trains_and_its_stages_load_by_name(tmp_path):
    from safetensors.torch import save_file

    cfg = tab_config("smoke", arch="resnet18", init=None, size=40, crop=32)
    model = TabEncoder(cfg.arch, cfg.init, 8)
    rng = np.random.default_rng(1)
    imgs = rng.integers(0, 255, (4, 40, 40, 3), dtype=np.uint8)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    train_epoch(model, opt, imgs, np.zeros(4, int), imgs[::-1].copy(), np.zeros(4, int),
                orthonormal_prototypes(1, 8, 0), cfg, torch.Generator().manual_seed(0), torch.device("cpu"))
    path = tmp_path / "r18.safetensors"
    save_file({k: v.contiguous() for k, v in model.stages.state_dict().items()}, str(path))
    fx = FeatureExtractor(BackboneSpec(name="resnet18", weights=str(path), levels=(4,))).eval()
    model.eval()
    x = torch.rand(1, 3, 32, 32)
    assert torch.allclose(fx(x)[0], model.extractor(x)[0], atol=1e-5)
