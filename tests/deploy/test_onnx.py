"""`export-model --format onnx` and `anomalyforge.deploy`: the whole model (PatchCore's
nearest-neighbour search included) in one ONNX file, onnxruntime equal to PyTorch on real bottle
images, and the deploy package running it without importing torch."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from anomalyforge.cli import main
from anomalyforge.data.io import read_image
from anomalyforge.pipelines.predict import check_parity

REPO = Path(__file__).resolve().parents[2]


def _bottle_images(bottle_dir: Path) -> list[Path]:
    return [bottle_dir / f"test/{t}/{i:03d}.png" for t in ("broken_large", "contamination", "good") for i in (0, 1)]


def test_onnxruntime_equals_pytorch_on_real_images(bottle_model, bottle_onnx, bottle_dir):
    imgs = np.stack([read_image(p, 64) for p in _bottle_images(bottle_dir)])
    diff = check_parity(bottle_model, bottle_onnx, imgs)
    print(f"max abs difference onnxruntime vs PyTorch: {diff}")
    assert diff["map"] <= 1e-4 and diff["score"] <= 1e-4 and diff["probs"] <= 1e-4


def test_deploy_predicts_without_torch_and_writes_the_same_columns(bottle_model, bottle_onnx, bottle_dir, tmp_path):
    paths = [str(p) for p in _bottle_images(bottle_dir)[:4]]
    code = ("import sys, json\n"
            "import anomalyforge.deploy as d\n"
            "assert 'torch' not in sys.modules, 'import'\n"
            f"rows = d.predict_onnx({str(bottle_onnx)!r}, {paths!r}, {str(tmp_path / 'onnx')!r}, batch=3)\n"
            "assert 'torch' not in sys.modules, 'predict'\n"
            "print(json.dumps([r.status for r in rows]))\n")
    env = {"PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == ["ok"] * 4
    assert main(["predict", str(bottle_model), *paths, "--out", str(tmp_path / "torch")]) == 0

    def rows(d: str) -> list[dict]:
        with open(tmp_path / d / "predictions.csv", newline="") as fh:
            return list(csv.DictReader(fh))

    a, b = rows("torch"), rows("onnx")
    assert list(a[0]) == list(b[0])
    for x, y in zip(a, b, strict=True):
        assert (x["path"], x["verdict"], x["defect_type"], x["mask"]) == (y["path"], y["verdict"], y["defect_type"],
                                                                          y["mask"])
        assert float(x["score"]) == pytest.approx(float(y["score"]), abs=1e-4)


def test_cli_predicts_with_the_onnx_file(bottle_onnx, bottle_dir, tmp_path, capsys):
    out = tmp_path / "p"
    assert main(["predict", str(bottle_onnx), str(bottle_dir / "test/good/000.png"), "--out", str(out)]) == 0
    assert "1 images predicted" in capsys.readouterr().out
    assert (out / "predictions.jsonl").is_file()


def test_bad_exports_and_onnx_files_are_one_line_exit_2(bottle_model, bottle_dir, tmp_path, capsys):
    img = str(bottle_dir / "test/good/000.png")
    assert main(["export-model", str(bottle_model), str(tmp_path / "m.pt")]) == 2
    assert "must end in .onnx" in capsys.readouterr().err
    assert main(["export-model", str(bottle_model), str(tmp_path / "m.onnx"), "--format", "tflite"]) == 2
    assert "unknown export format 'tflite'" in capsys.readouterr().err
    assert main(["export-model", str(tmp_path / "none"), str(tmp_path / "m.onnx")]) == 2
    assert "model folder not found" in capsys.readouterr().err
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not an onnx model")
    assert main(["predict", str(junk), img, "--out", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{junk}: cannot load ONNX model" in err[0]
    assert not (tmp_path / "p").exists() and not (tmp_path / "m.onnx").exists()
