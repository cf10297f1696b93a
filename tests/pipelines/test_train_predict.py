"""`anomalyforge train` / `predict` on real MVTec AD bottle (smoke profile at 64 px, fused with
PatchCore): the delivered model is the benchmarked one, thresholds come from held-out good training
images, predictions cover any image size, resume, and every bad input is one line and exit 2."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors.numpy import load

from anomalyforge.cli import main
from anomalyforge.data.io import read_image
from anomalyforge.formats.model import ModelInfo, _aliases, read_weights
from anomalyforge.formats.predictions import COLUMNS
from anomalyforge.metrics import image_scores_from_maps
from anomalyforge.pipelines.benchmark import run_benchmark
from anomalyforge.pipelines.train import load_model
from modelfixture import PROFILE, N

TYPES = ["broken_large", "broken_small", "contamination"]


def _images(bottle_dir: Path, tmp_path: Path) -> Path:
    """Two real test images (one defect, one good) at their size, one resized to 300 x 200, one corrupt."""
    d = tmp_path / "imgs"
    d.mkdir()
    shutil.copy(bottle_dir / "test/broken_large/000.png", d / "defect.png")
    shutil.copy(bottle_dir / "test/good/000.png", d / "good.png")
    Image.open(bottle_dir / "test/contamination/001.png").resize((300, 200)).save(d / "small.jpg")
    return d


def _corrupt(d: Path) -> Path:
    bad = d / "zz_bad.png"
    bad.write_bytes((d / "defect.png").read_bytes()[:2000])
    return bad


def _rows(out: Path) -> list[dict]:
    with open(out / "predictions.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_model_folder_records_everything(bottle_model, bottle_dir):
    info = ModelInfo.read(bottle_model)
    doc = json.loads((bottle_model / "model.json").read_text())
    assert doc["schema_version"] == 1 and doc["kind"] == "anomalyforge-model"
    assert (info.category, info.method, info.profile, info.image_size, info.cls_size) == \
        ("bottle", "croppaste", "smoke", 64, 64)
    assert info.model == "feature_head+patchcore" and info.fusion is not None and info.fusion["weight"] == 0.6
    assert info.defect_types == TYPES and info.labels == TYPES and info.n == N
    assert info.config == PROFILE.to_dict()
    assert len(info.backbone["sha256"]) == 64 and info.backbone["name"] == "efficientnet-lite0"
    sp = info.split
    assert {t: len(v) for t, v in sp["train_defects"].items()} == {"broken_large": 7, "broken_small": 8,
                                                                   "contamination": 7}
    assert len(sp["train_good"]) == 209 and len(sp["holdout_good"]) == 21
    assert set(sp["holdout_good"]) <= set(sp["train_good"])
    assert all(p.startswith("train/") for p in sp["train_good"])  # relative to the data root
    assert not any("test/" in p for v in sp["train_defects"].values() for p in v if p.startswith("test/good"))
    assert info.run == "run" and (bottle_model / "run" / "run.json").is_file()
    assert (bottle_model / "weights.safetensors").is_file() and info.weights.n_tensors > 100


def test_the_shared_frozen_backbone_is_stored_once(bottle_model):
    """PatchCore's extractor is the same frozen ImageNet backbone as the localiser's (and the
    classifier's frozen levels): the file keeps one copy and aliases the rest (restored on loading:
    the model above loads and predicts)."""
    data = (bottle_model / "weights.safetensors").read_bytes()
    aliases, stored = _aliases(data), load(data)
    assert any(k.startswith("patchcore.extractor.") for k in aliases)
    assert not any(k.startswith("patchcore.extractor.") for k in stored)  # every one of them is an alias
    assert set(aliases.values()) <= set(stored) and not set(aliases) & set(stored)
    tensors = read_weights(bottle_model, ModelInfo.read(bottle_model).weights)
    assert len(tensors) == ModelInfo.read(bottle_model).weights.n_tensors
    assert all(np.array_equal(tensors[k], tensors[v]) for k, v in aliases.items())


def test_thresholds_come_from_held_out_training_images_only(bottle_model, bottle_dir):
    info = ModelInfo.read(bottle_model)
    t = info.thresholds
    assert (t.fpr, t.n_images, t.n_pixels) == (0.01, 21, 21 * 64 * 64)
    assert t.image_fpr <= 0.01 and "held-out good training" in t.rule
    # image: recomputed from the loaded model on the recorded held-out files: 21 images < 1 / 1 %, so
    # the threshold is the largest held-out score
    tm = load_model(bottle_model)
    goods = np.stack([read_image(bottle_dir / p, 64) for p in info.split["holdout_good"]])
    maps = tm.model.localizer.predict(goods)
    scores = image_scores_from_maps(maps, info.score_pool)
    assert t.image == pytest.approx(scores.max(), abs=1e-6)
    # pixel: 22 few-shot defects >= 4, so best F1 on 3-fold held-out training defects; each fold
    # dropped the pairs pasted from its held-out defects (croppaste names its donor)
    assert t.pixel_from == "kfold_f1" and t.kfold is not None
    assert (t.kfold["k"], t.kfold["n_defects"], t.kfold["pairs_without_donor"]) == (3, 22, 0)
    assert sum(f["held_out"] for f in t.kfold["folds"]) == 22
    assert all(f["pairs_dropped"] + f["pairs_trained"] == 3 * N and f["pairs_trained"] > 0 for f in t.kfold["folds"])
    assert 0 < t.kfold["f1"] <= 1 and 0 < t.pixel < 1 and "3-fold refit" in t.rule
    assert t.pixel_fpr == pytest.approx(float(np.mean(maps > t.pixel)), abs=1e-3)  # on the held-out goods
    assert info.display_scale is not None and info.display_scale["n_images"] == 21


def test_the_benchmarked_model_is_the_delivered_model(bottle_model, bottle_dir, tmp_path, one_torch_thread,
                                                    capsys):
    """Same split, seed and profile: the benchmark trains the very model `train` wrote (same heat
    scale, same thresholds, byte-identical weights and masks: training is deterministic) and scores
    its verdicts at those thresholds; `--save-models` writes that model folder."""
    res = run_benchmark(bottle_dir, tmp_path / "bench", ["croppaste"], profile=PROFILE, n=N, progress=False,
                        save_models=True)
    entry = res["methods"]["croppaste"]
    bench = entry["display_scale"]
    info = ModelInfo.read(bottle_model)
    mine = info.display_scale
    assert mine is not None
    assert (bench["lo"], bench["hi"], bench["n_images"]) == (mine["lo"], mine["hi"], mine["n_images"])
    d = entry["decisions"]
    assert (d["image_threshold"], d["pixel_threshold"], d["pixel_from"]) == (
        info.thresholds.image, info.thresholds.pixel, "kfold_f1")
    assert (d["n_good"], d["n_defect"]) == (20, 41) and d["type_accuracy"] == entry["classification"]["accuracy"]
    z = np.load(tmp_path / "bench" / entry["artifacts"]["maps"])
    flag, lab = z["image_scores"] > d["image_threshold"], z["labels"] == 1
    assert (d["image_accuracy"], d["false_alarm_rate"], d["miss_rate"]) == pytest.approx(
        (np.mean(flag == lab), np.mean(flag[~lab]), np.mean(~flag[lab])))
    saved = tmp_path / "bench" / entry["artifacts"]["model"]
    assert ModelInfo.read(saved).weights.sha256 == info.weights.sha256
    img = str(bottle_dir / "test/broken_small/003.png")
    for m, o in ((bottle_model, "a"), (saved, "b")):
        assert main(["predict", str(m), img, "--out", str(tmp_path / o)]) == 0
    ra, rb = _rows(tmp_path / "a")[0], _rows(tmp_path / "b")[0]
    assert (tmp_path / "a" / ra["mask"]).read_bytes() == (tmp_path / "b" / rb["mask"]).read_bytes()
    capsys.readouterr()


def test_predict_any_size_then_resume(bottle_model, bottle_dir, tmp_path, capsys):
    d = _images(bottle_dir, tmp_path)
    out = tmp_path / "pred"
    assert main(["predict", str(bottle_model), str(d / "defect.png"), str(d / "*.jpg"), str(d / "good.png"),
                 "--out", str(out), "--batch", "2"]) == 0
    rows = _rows(out)
    assert list(rows[0]) == COLUMNS
    assert [Path(r["path"]).name for r in rows] == ["defect.png", "small.jpg", "good.png"]
    info = ModelInfo.read(bottle_model)
    for r in rows:
        assert r["status"] == "ok" and r["model"] == info.identity and r["defect_type"] in TYPES
        assert r["verdict"] == ("defect" if float(r["score"]) > info.thresholds.image else "good")
        assert 0 < float(r["type_prob"]) <= 1
        mask = np.asarray(Image.open(out / r["mask"]))
        over = np.asarray(Image.open(out / r["overlay"]))
        assert mask.shape == (int(r["height"]), int(r["width"])) and set(np.unique(mask)) <= {0, 255}
        assert over.shape == (int(r["height"]), int(r["width"]), 3)
    assert (int(rows[1]["width"]), int(rows[1]["height"])) == (300, 200)
    assert len((out / "predictions.jsonl").read_text().splitlines()) == 3
    # the same score as the model gives the 64 px image (resized as for training)
    tm = load_model(bottle_model)
    x = read_image(d / "defect.png", 64)[None]
    assert float(rows[0]["score"]) == pytest.approx(float(tm.run(x, x)[0][0]), abs=1e-6)
    # re-running into the same folder resumes: nothing is redone, a new image is added
    stamp = (out / rows[0]["mask"]).stat().st_mtime_ns
    shutil.copy(bottle_dir / "test/broken_small/000.png", d / "more.png")
    assert main(["predict", str(bottle_model), str(d), "--out", str(out)]) == 0
    again = _rows(out)
    assert {Path(r["path"]).name for r in again} == {"defect.png", "small.jpg", "good.png", "more.png"}
    assert (out / rows[0]["mask"]).stat().st_mtime_ns == stamp
    capsys.readouterr()


def test_a_corrupt_image_stops_before_writing_or_is_an_error_row(bottle_model, bottle_dir, tmp_path, capsys):
    d = _images(bottle_dir, tmp_path)
    bad = _corrupt(d)
    out = tmp_path / "pred"
    assert main(["predict", str(bottle_model), str(d), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"anomalyforge: error: {bad}: cannot read image")
    assert not out.exists()  # nothing half-written
    assert main(["predict", str(bottle_model), str(d), "--out", str(out), "--skip-bad"]) == 0
    rows = {Path(r["path"]).name: r for r in _rows(out)}
    assert rows["zz_bad.png"]["status"] == "error" and "cannot read image" in rows["zz_bad.png"]["error"]
    assert rows["zz_bad.png"]["score"] == "" and all(rows[k]["status"] == "ok" for k in ("defect.png", "good.png"))


def _copy_model(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("run"))
    return dst


@pytest.mark.parametrize("case", ["missing", "not_a_model", "schema", "weights_altered", "weights_garbage"])
def test_bad_model_folders_are_one_line_exit_2(bottle_model, bottle_dir, tmp_path, capsys, case):
    img = bottle_dir / "test/good/000.png"
    if case == "missing":
        model, want = tmp_path / "nope", "model folder not found"
    elif case == "not_a_model":
        model, want = tmp_path / "empty", "not a model folder (no model.json)"
        model.mkdir()
    else:
        model = _copy_model(bottle_model, tmp_path / "m")
        mj = model / "model.json"
        doc = json.loads(mj.read_text())
        w = model / "weights.safetensors"
        if case == "schema":
            doc["schema_version"] = 99
            want = "schema_version 99 is newer than this anomalyforge reads (1)"
        elif case == "weights_altered":
            data = bytearray(w.read_bytes())
            data[-100] ^= 0xFF
            w.write_bytes(bytes(data))
            want = "model weights do not match model.json (sha256 differs)"
        else:
            import hashlib

            w.write_bytes(b"not safetensors at all")
            doc["weights"]["sha256"] = hashlib.sha256(b"not safetensors at all").hexdigest()
            want = "cannot read model weights"
        mj.write_text(json.dumps(doc))
    out = tmp_path / "pred"
    assert main(["predict", str(model), str(img), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and want in err[0], err
    assert not out.exists()


def test_train_refuses_bad_options(bottle_model, bottle_dir, tmp_path, capsys):
    assert main(["train", "--data", str(bottle_dir), "--method", "nope", "--profile", "smoke",
                 "--out", str(tmp_path / "m")]) == 2
    assert "unknown method 'nope'" in capsys.readouterr().err
    assert main(["train", "--data", str(bottle_dir), "--method", "croppaste", "--profile", "smoke",
                 "--out", str(bottle_model)]) == 2
    assert "holds a trained model already" in capsys.readouterr().err
    assert main(["train", "--data", str(bottle_dir), "--method", "croppaste", "--profile", "smoke", "--fpr", "1.5",
                 "--out", str(tmp_path / "m")]) == 2
    assert "--fpr must be in [0, 1)" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()
