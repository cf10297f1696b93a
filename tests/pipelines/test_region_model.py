"""A model whose classifier reads the region its map marks (`cls_input` region, ensemble), through
benchmark, train, the model folder, ONNX export and predict, on real bottle (smoke profile, 64 px)."""

from __future__ import annotations

import csv
import dataclasses

import numpy as np
import pytest

from anomalyforge.cli import main
from anomalyforge.data.io import read_image
from anomalyforge.formats.model import ModelInfo
from anomalyforge.inspect.classifier_choice import CANDIDATES
from anomalyforge.inspect.classify import DefectClassifier
from anomalyforge.inspect.ensemble_classify import EnsembleDefectClassifier
from anomalyforge.inspect.pairs import GeneratedPairs
from anomalyforge.inspect.region_classify import RegionDefectClassifier
from anomalyforge.pipelines.benchmark import run_benchmark
from anomalyforge.pipelines.predict import check_parity, export_model
from anomalyforge.pipelines.train import load_model, train_model
from modelfixture import PROFILE, N


@pytest.mark.parametrize("kind", ["region", "ensemble"])
def test_region_model_benchmarks_saves_loads_exports_and_predicts(bottle_dir, tmp_path, capsys, kind):
    """The benchmark types the test defects from the maps it scores, the saved model gives the same
    types back from its own maps, the ONNX graph equals PyTorch, and `predict` writes those types;
    for the region classifier alone and averaged with the whole-image CNN."""
    prof = dataclasses.replace(PROFILE, cls_input=kind)
    res = run_benchmark(bottle_dir, tmp_path / "bench", ["croppaste"], profile=prof, n=N, progress=False,
                        save_models=True)
    entry = res["methods"]["croppaste"]
    cls = entry["classification"]
    assert cls["input"] == kind and cls["choice"]["rule"] == "fixed"
    assert "k-fold map" in cls["trained_on"]
    assert set(cls["candidates_test"]) == {"image", "region", "ensemble"}  # each one scored after the choice
    assert cls["candidates_test"][kind] == cls["accuracy"]
    z = np.load(tmp_path / "bench" / entry["artifacts"]["maps"])
    assert cls["accuracy"] == np.mean(z["cls_pred"] == z["cls_true"])
    parts = entry["timings"]["train_parts_s"]  # where the training time went
    assert set(parts) == {"localizer_s", "classifier_s", "thresholds_s", "classifier_choice_s"}
    assert sum(parts.values()) <= entry["timings"]["train_s"] + 0.1
    folder = tmp_path / "bench" / entry["artifacts"]["model"]
    info = ModelInfo.read(folder)
    assert info.config["cls_input"] == kind
    assert info.cls_size == (info.image_size if kind == "region" else PROFILE.cls_size)
    tm = load_model(folder)
    assert isinstance(tm.model.classifier, RegionDefectClassifier if kind == "region" else EnsembleDefectClassifier)
    sel = z["labels"] == 1
    paths = [p for p, s in zip(z["paths"], sel, strict=True) if s][:6]
    imgs = np.stack([read_image(p, info.image_size) for p in paths])
    _, _, probs = tm.run(imgs, None)  # the benchmark resized the CNN's input from these images too
    assert [info.labels[k] for k in probs.argmax(1)] == list(z["cls_pred"][:6])
    onnx_file = export_model(folder, tmp_path / "region.onnx")
    diff = check_parity(folder, onnx_file, imgs)
    assert diff["probs"] <= 1e-4 and diff["map"] <= 1e-4
    assert main(["predict", str(onnx_file), paths[0], "--out", str(tmp_path / "pred")]) == 0
    with open(tmp_path / "pred" / "predictions.csv", newline="") as f:
        row = next(csv.DictReader(f))
    assert row["defect_type"] == z["cls_pred"][0]
    capsys.readouterr()


def test_choose_records_every_fold_score_and_delivers_the_chosen_one(bottle_dir, tmp_path, monkeypatch):
    prof = dataclasses.replace(PROFILE, cls_input="choose")
    reads = []
    real_pairs = GeneratedPairs.from_fit_data.__func__  # type: ignore[attr-defined]
    monkeypatch.setattr(GeneratedPairs, "from_fit_data",
                        classmethod(lambda cls, fit: reads.append(fit.category) or real_pairs(cls, fit)))
    info = train_model(bottle_dir, tmp_path / "m", "croppaste", profile=prof, n=N, progress=False)
    assert reads == ["bottle"]  # the real few-shot defects are read once, for the classifier and the choice
    ch = info.classifier_choice
    assert ch is not None and ch["cls_input"] == "choose" and set(ch["accuracy"]) == set(CANDIDATES)
    best = max(ch["accuracy"].values())
    assert ch["chosen"] == next(c for c in CANDIDATES if ch["accuracy"][c] == best)
    assert info.config.get("cls_input", "image") == ch["chosen"]  # the folder records what it delivers
    kind = type(load_model(tmp_path / "m").model.classifier)
    assert kind is {"image": DefectClassifier, "region": RegionDefectClassifier,
                    "ensemble": EnsembleDefectClassifier}[ch["chosen"]]
