"""`export-model --format openvino`: the whole graph as an fp32 OpenVINO IR, OpenVINO's outputs equal
to PyTorch's on real bottle images, `predict MODEL.xml` writing the usual files, and a one-line
error when openvino is not importable."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from anomalyforge.cli import main
from anomalyforge.data.io import read_image
from anomalyforge.pipelines.predict import check_parity, export_model

pytest.importorskip("openvino")


def test_openvino_equals_pytorch_and_predicts(bottle_model, bottle_dir, tmp_path, capsys):
    xml = tmp_path / "bottle.xml"
    assert main(["export-model", str(bottle_model), str(xml), "--format", "openvino"]) == 0
    assert xml.is_file() and xml.with_suffix(".bin").is_file()
    imgs = np.stack([read_image(bottle_dir / f"test/{t}/{i:03d}.png", 64)
                     for t in ("broken_large", "contamination", "good") for i in (0, 1)])
    diff = check_parity(bottle_model, xml, imgs)
    print(f"max abs difference OpenVINO vs PyTorch: {diff}")
    assert diff["map"] <= 1e-4 and diff["score"] <= 1e-4 and diff["probs"] <= 1e-4
    out = tmp_path / "p"
    assert main(["predict", str(xml), str(bottle_dir / "test/good/000.png"), "--out", str(out)]) == 0
    assert "1 images predicted" in capsys.readouterr().out and (out / "predictions.csv").is_file()


def test_missing_openvino_or_bad_ir_is_one_line_exit_2(bottle_model, bottle_dir, tmp_path, capsys, monkeypatch):
    img = str(bottle_dir / "test/good/000.png")
    junk = tmp_path / "junk.xml"
    junk.write_text("<not an IR/>")
    junk.with_suffix(".bin").write_bytes(b"")
    assert main(["predict", str(junk), img, "--out", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{junk}: cannot load OpenVINO model" in err[0]
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError
    assert main(["export-model", str(bottle_model), str(tmp_path / "m.xml"), "--format", "openvino"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "openvino is not installed" in err[0]
    assert not (tmp_path / "m.xml").exists() and not (tmp_path / "p").exists()
    with pytest.raises(Exception, match="openvino is not installed"):
        export_model(bottle_model, tmp_path / "m.xml", "openvino")
