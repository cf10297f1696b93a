"""`pretrain_backbone` (TAB) on real good training images, resume, the CLI, and the backbone
plugged into PatchCore / the feature-head localiser / the classifier / the benchmark."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import anomalyforge.pipelines.pretrain as pretrain_mod
from anomalyforge.cli import main
from anomalyforge.data import few_shot_split, load_dataset
from anomalyforge.data.io import read_image
from anomalyforge.errors import ConfigError
from anomalyforge.features.backbone import BackboneSpec, FeatureExtractor
from anomalyforge.formats.backbone import BackboneInfo, read_tensors
from anomalyforge.inspect.classify import build_classifier
from anomalyforge.inspect.models import build_localizer
from anomalyforge.inspect.patchcore import PatchCore
from anomalyforge.inspect.profiles import backbone_arch, backbone_identity, backbone_weights, get_profile
from anomalyforge.pipelines.benchmark import run_benchmark
from anomalyforge.pipelines.pretrain import pretrain_backbone


@pytest.fixture(scope="module")
def backbone(tmp_path_factory, bottle_dir, juice_dir):
    out = tmp_path_factory.mktemp("tab") / "bb"
    info = pretrain_backbone([bottle_dir, juice_dir], out, profile="smoke", progress=False)
    return out, info


def test_record_names_classes_text_encoder_prompts_and_only_training_goods(backbone, bottle_dir, juice_dir):
    out, info = backbone
    assert info.complete and info.epochs_done == 2 and len(info.history) == 2
    assert [c["class_name"] for c in info.categories] == ["bottle", "juice bottle"]
    assert info.text_encoder["kind"] == "none" and "no language" in info.text_encoder["note"]
    assert len(info.prompts["templates"]) == 20 and len(info.prompts["abnormal"]) == 17
    assert info.methods == ["perlin", "cutpaste", "nsa"]
    for folder, rec in zip((bottle_dir, juice_dir), info.categories, strict=True):
        split = few_shot_split(load_dataset(folder), progress=False)
        train = {str(s.image) for s in split.train_good}
        test = {str(s.image) for s in split.test_good} | {str(s.image) for v in split.test_defects.values()
                                                          for s in v}
        assert rec["n_used"] == 4 and set(rec["used"]) <= train and not set(rec["used"]) & test
    assert BackboneInfo.read(out).to_dict() == info.to_dict()
    assert all(h["time_s"] > 0 and h["peak_rss_mb"] > 0 for h in info.history)


def test_interrupted_pretraining_resumes_to_the_same_weights(backbone, bottle_dir, juice_dir, tmp_path,
                                                             monkeypatch):
    calls = []
    real = pretrain_mod.train_epoch

    def interrupt_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(pretrain_mod, "train_epoch", interrupt_second)
    with pytest.raises(KeyboardInterrupt):
        pretrain_backbone([bottle_dir, juice_dir], tmp_path / "bb", profile="smoke", progress=False)
    half = BackboneInfo.read(tmp_path / "bb")
    assert not half.complete and half.epochs_done == 1
    monkeypatch.setattr(pretrain_mod, "train_epoch", real)
    done = pretrain_backbone([bottle_dir, juice_dir], tmp_path / "bb", profile="smoke", progress=False)
    assert done.complete and [h["epoch"] for h in done.history] == [1, 2]
    assert done.weights.sha256 == backbone[1].weights.sha256  # as if never interrupted
    with pytest.raises(ConfigError, match="holds a different pretraining .*seed"):
        pretrain_backbone([bottle_dir, juice_dir], tmp_path / "bb", profile="smoke", seed=3, progress=False)


def test_every_detector_loads_the_backbone_and_the_benchmark_records_it(backbone, bottle_dir, tmp_path):
    out, info = backbone
    prof = get_profile("smoke", backbone=str(out))
    path = backbone_weights(prof)
    stages = read_tensors(out, info.weights)
    pc = PatchCore((2, 3), weights=path)
    loc = build_localizer("feature_head", (1, 2, 3), 16, weights=path)
    cls = build_classifier("efficientnet-lite0", 2, path, 4)
    for net in (pc.extractor.net, loc.extractor.net, cls.features.net):
        assert all(torch.equal(v, stages[k]) for k, v in net.state_dict().items())
    imagenet = FeatureExtractor(BackboneSpec(levels=(2,))).eval()
    x = torch.rand(1, 3, 64, 64)
    assert not torch.allclose(pc.extractor(x)[0], imagenet(x)[0])

    res = run_benchmark(bottle_dir, tmp_path / "bench", ["patchcore"], profile=prof, progress=False)
    assert res["backbone"] == backbone_identity(prof)
    assert res["backbone"]["weights"] == "tab" and res["backbone"]["sha256"] == info.weights.sha256
    assert res["config"]["backbone"] == str(out) and res["methods"]["patchcore"]["status"] == "done"
    assert get_profile("smoke")  # the default stays the ImageNet weights
    assert backbone_identity(get_profile("smoke"))["weights"] == "imagenet"
    with pytest.raises(ConfigError, match="not 'imagenet' nor a backbone folder"):
        get_profile("smoke", backbone=str(tmp_path / "nothing"))


def test_cli_pretrain_backbone_prints_the_backbone_and_refuses_bad_input(backbone, bottle_dir, juice_dir,
                                                                       tmp_path, capsys):
    out, info = backbone
    # the same options on a finished folder: nothing to do, the record is printed
    assert main(["pretrain-backbone", "--data", str(bottle_dir), str(juice_dir), "--profile", "smoke",
                 "--out", str(out)]) == 0
    line = capsys.readouterr().out
    assert info.identity in line and "bottle, juice bottle" in line and f"backbone={out}" in line
    assert main(["pretrain-backbone", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope" in err[0] and not (tmp_path / "o").exists()
    assert main(["pretrain-backbone", "--data", str(bottle_dir), "--methods", "gaa", "--profile", "smoke",
                 "--out", str(tmp_path / "o")]) == 2
    assert "synthetic methods must be among perlin, cutpaste, nsa" in capsys.readouterr().err
    assert main(["pretrain-backbone", "--data", str(bottle_dir), str(juice_dir), "--class-name", "x",
                 "--profile", "smoke", "--out", str(tmp_path / "o")]) == 2
    assert "--class-name given 1 time(s) for 2 categories" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    for cmd in (["fewshot"], ["train", "--method", "croppaste"], ["benchmark", "--methods", "patchcore"]):
        assert main([*cmd, "--data", str(bottle_dir), "--set", f"backbone={tmp_path / 'nope'}",
                     "--out", str(tmp_path / "f")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "not 'imagenet' nor a backbone folder" in err[0]
    assert not (tmp_path / "f").exists()


def test_a_resnet18_backbone_plugs_into_every_detector_and_the_saved_model(bottle_dir, tmp_path):
    from anomalyforge.pipelines.train import load_model, train_model

    out = tmp_path / "r18"  # random init: no ResNet weights install offline; the path is the same
    info = pretrain_backbone([bottle_dir], out, profile="smoke", arch="resnet18", init=None, progress=False)
    prof = get_profile("smoke", fusion=0.6, quality=False, backbone=str(out))
    assert backbone_arch(prof) == "resnet18" and backbone_arch(get_profile("smoke")) == "efficientnet-lite0"
    stages = read_tensors(out, info.weights)
    path = backbone_weights(prof)
    pc = PatchCore((2, 3), weights=path, arch="resnet18")
    loc = build_localizer("feature_head", (1, 2, 3), 16, weights=path, arch="resnet18")
    cls = build_classifier("resnet18", 2, path, 4)
    for net in (pc.extractor.net, loc.extractor.net, cls.features.net):
        assert all(torch.equal(v, stages[k]) for k, v in net.state_dict().items())
    assert cls.fc.in_features == 512 and loc.extractor.channels == [64, 128, 256]
    x = torch.rand(2, 3, 64, 64)  # the cached-trunk path equals the whole network
    assert torch.allclose(cls.from_trunk(cls.trunk_features(x)), cls.fc(cls.features(x)[0].mean((2, 3))),
                          atol=1e-5)
    with pytest.raises(ConfigError, match="lite_unet's encoder is efficientnet-lite0, not a resnet18"):
        build_localizer("lite_unet", weights=path, arch="resnet18")

    model = train_model(bottle_dir, tmp_path / "model", "croppaste", profile=prof, n=4, progress=False)
    assert model.backbone["name"] == "resnet18" and model.backbone["sha256"] == info.weights.sha256
    loaded = load_model(tmp_path / "model")  # rebuilt from model.json alone: no backbone folder needed
    fused = loaded.model.localizer
    assert all(torch.equal(v, stages[k]) for k, v in fused.patchcore.extractor.net.state_dict().items())
    assert loaded.model.classifier is not None
    images = np.stack([read_image(s.image, 64) for s in few_shot_split(load_dataset(bottle_dir),
                                                                      progress=False).test_good[:2]])
    scores, maps, probs = loaded.run(images, None)
    assert maps.shape == (2, 64, 64) and np.isfinite(maps).all() and probs.shape[0] == 2

    res = run_benchmark(bottle_dir, tmp_path / "bench", ["patchcore"], profile=prof, progress=False)
    assert res["backbone"]["name"] == "resnet18" and res["methods"]["patchcore"]["status"] == "done"
