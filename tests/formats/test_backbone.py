"""BACKBONE/ folder format: round trip, schema errors naming the file, and what a detector refuses."""

from __future__ import annotations

import json

import pytest
import torch

from anomalyforge.errors import ConfigError, DataError
from anomalyforge.formats.backbone import (
    BACKBONE_JSON,
    WEIGHTS,
    BackboneInfo,
    read_tensors,
    resolve_backbone,
    write_tensors,
)


def _folder(tmp_path, **kw):
    ref = write_tensors(tmp_path, WEIGHTS, {"stem.0.weight": torch.arange(6.0).view(2, 3)})
    info = BackboneInfo(**{"arch": "efficientnet-lite0", "init": "imagenet", "weights": ref, "profile": "smoke",
                           "config": {"epochs": 2}, "categories": [{"name": "bottle", "class_name": "bottle"}],
                           "methods": ["perlin"], "text_encoder": {"kind": "none", "id": None},
                           "prompts": {"templates": ["a photo of a {}."]}, "complete": True, "epochs_done": 2,
                           **kw})
    info.write(tmp_path)
    return info


def test_round_trip_and_verified_weights(tmp_path):
    info = _folder(tmp_path)
    back = BackboneInfo.read(tmp_path)
    assert back.to_dict() == info.to_dict() and back.identity == info.weights.sha256[:16]
    assert torch.equal(read_tensors(tmp_path, back.weights)["stem.0.weight"], torch.arange(6.0).view(2, 3))
    path, ident = resolve_backbone(tmp_path)
    assert path.endswith(WEIGHTS) and ident["weights"] == "tab" and ident["sha256"] == info.weights.sha256
    assert ident["text_encoder"] == "none" and ident["classes"] == ["bottle"]


def test_detectors_refuse_unfinished_altered_or_other_backbones(tmp_path):
    _folder(tmp_path / "a", complete=False, epochs_done=1)
    with pytest.raises(DataError, match="pretraining unfinished .*resume"):
        resolve_backbone(tmp_path / "a")
    _folder(tmp_path / "b", arch="resnet18")
    with pytest.raises(ConfigError, match="a resnet18 backbone; this detector uses efficientnet-lite0"):
        resolve_backbone(tmp_path / "b", arch="efficientnet-lite0")
    assert resolve_backbone(tmp_path / "b")[1]["name"] == "resnet18"  # no arch asked: any backbone
    _folder(tmp_path / "c")
    (tmp_path / "c" / WEIGHTS).write_bytes(b"changed")
    with pytest.raises(DataError, match=r"weights.safetensors: does not match backbone.json"):
        resolve_backbone(tmp_path / "c")
    with pytest.raises(DataError, match="does not match"):
        read_tensors(tmp_path / "c", BackboneInfo.read(tmp_path / "c").weights)


def test_schema_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match="backbone folder not found"):
        BackboneInfo.read(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="not a backbone folder .*pretrain-backbone"):
        BackboneInfo.read(tmp_path / "empty")
    _folder(tmp_path / "d")
    doc = json.loads((tmp_path / "d" / BACKBONE_JSON).read_text())
    del doc["arch"]
    (tmp_path / "d" / BACKBONE_JSON).write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r"backbone.json: missing key 'arch'"):
        BackboneInfo.read(tmp_path / "d")
    doc["arch"], doc["schema_version"] = "efficientnet-lite0", 99
    (tmp_path / "d" / BACKBONE_JSON).write_text(json.dumps(doc))
    with pytest.raises(DataError, match="newer than this anomalyforge reads"):
        BackboneInfo.read(tmp_path / "d")
