"""Export parity of the graph variants the session model does not cover: test-time flip averaging
(`tta`) and a localiser alone (no PatchCore fusion, no classifier), onnxruntime against PyTorch on
real bottle images. Each variant is the session's trained model with its model.json changed (the
weights are the same tensors; a localiser-only model simply leaves the PatchCore ones unread)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from anomalyforge.data.io import read_image
from anomalyforge.pipelines.predict import check_parity, export_model
from anomalyforge.pipelines.train import load_model


def _variant(src: Path, dst: Path, case: str) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("run"))
    doc = json.loads((dst / "model.json").read_text())
    if case == "tta":
        doc["config"]["tta"] = True
    else:  # localiser only
        doc["config"]["fusion"] = 0.0
        doc.update(fusion=None, labels=[], cls_size=None, model="feature_head")
    (dst / "model.json").write_text(json.dumps(doc))
    return dst


@pytest.mark.parametrize("case", ["tta", "localizer_only"])
def test_variant_exports_equal_pytorch(bottle_model, bottle_dir, tmp_path, case):
    model = _variant(bottle_model, tmp_path / case, case)
    tm = load_model(model)
    if case == "tta":  # the fused model's supervised part averages over flips
        assert tm.model.localizer.supervised.tta  # type: ignore[attr-defined]
    else:
        assert tm.model.classifier is None and tm.info.fusion is None
    onnx_file = export_model(model, tmp_path / f"{case}.onnx")
    imgs = np.stack([read_image(bottle_dir / f"test/{t}/000.png", 64) for t in ("broken_large", "good")])
    diff = check_parity(model, onnx_file, imgs)
    print(f"{case}: max abs difference onnxruntime vs PyTorch {diff}")
    assert diff["map"] <= 1e-4 and diff["score"] <= 1e-4 and diff["probs"] <= 1e-4
    if case == "localizer_only":
        assert tm.run(imgs, None)[2].shape == (2, 0)
