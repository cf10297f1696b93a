"""Each file format between stages: round trip, schema checks with one-line errors naming the file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from anomalyforge.errors import ConfigError, DataError
from anomalyforge.formats.manifest import (
    PairRecord,
    append_records,
    base_type,
    read_manifest,
    read_pairs,
    repair_manifest,
    subtype_name,
    write_manifest,
)
from anomalyforge.formats.quality import QualityScores
from anomalyforge.formats.results import BenchmarkResults, MethodResult, write_results
from anomalyforge.formats.run import FileRef, RunInfo, TrainingFiles, completeness, data_relative
from anomalyforge.formats.schema import refuse_other_job


def _info(**kw) -> RunInfo:
    training = TrainingFiles(good=[FileRef("train/good/000.png", "ab" * 32)],
                             defects={"crack": [FileRef("test/crack/000.png", "cd" * 32,
                                                        "ground_truth/crack/000_mask.png", "ef" * 32)]})
    return RunInfo(**{"method": "croppaste", "category": "bottle", "data": "/data/bottle", "size": 64,
                      "config": {"scale": [0.5, 1.0], "future_knob": 3}, "types": ["crack"], "n": 4,
                      "training": training, "expected_pairs": 4, "complete": False, **kw})


def _pair(i: int, **kw) -> PairRecord:
    return PairRecord(**{"id": f"crack@0_{i:06d}", "defect_type": "crack@0", "image": f"images/{i}.png",
                         "mask": f"masks/{i}.png", "source": "train/good/000.png", "seed": i,
                         "params": {"defect": "000", "anything": [1, 2]}, **kw})


def _one_line(exc: pytest.ExceptionInfo, path: Path, *words: str) -> None:
    msg = str(exc.value)
    assert "\n" not in msg and str(path) in msg, msg
    for w in words:
        assert w in msg, msg


def test_run_json_round_trip_keeps_unknown_keys(tmp_path):
    info = _info()
    info.write(tmp_path)
    doc = json.loads((tmp_path / "run.json").read_text())
    assert doc["schema_version"] == 2 and doc["training"]["defects"]["crack"][0]["mask_sha256"] == "ef" * 32
    doc["written_by_a_newer_minor"] = {"x": 1}
    (tmp_path / "run.json").write_text(json.dumps(doc))
    back = RunInfo.read(tmp_path)
    assert back.training == info.training and back.config["future_knob"] == 3
    assert back.extra == {"written_by_a_newer_minor": {"x": 1}}
    back.write(tmp_path)
    assert json.loads((tmp_path / "run.json").read_text()) == doc  # nothing lost
    assert back.resolve("train/good/000.png") == Path("/data/bottle/train/good/000.png")
    assert back.resolve("/elsewhere/x.png") == Path("/elsewhere/x.png")
    assert completeness(back, 3) == "incomplete run (3 of 4 pairs)"
    back.complete = True
    assert completeness(back, 3) is None


@pytest.mark.parametrize("edit, words", [
    (lambda d: d.update(seed="7"), ("'seed' must be an integer, got a string",)),
    (lambda d: d.pop("method"), ("missing key 'method'",)),
    (lambda d: d["training"]["good"][0].update(sha256=5), ("'training.good[0].sha256' must be a string",)),
    (lambda d: d.update(schema_version=99), ("schema_version 99 is newer", "upgrade")),
    (lambda d: d.clear() or d.update(x=1), ("missing key",)),
])
def test_run_json_mismatch_is_one_line_naming_the_file(tmp_path, edit, words):
    _info().write(tmp_path)
    doc = json.loads((tmp_path / "run.json").read_text())
    edit(doc)
    (tmp_path / "run.json").write_text(json.dumps(doc))
    with pytest.raises(DataError) as exc:
        RunInfo.read(tmp_path)
    _one_line(exc, tmp_path / "run.json", *words)


def test_run_json_missing_or_not_json(tmp_path):
    with pytest.raises(DataError, match="not a generation run"):
        RunInfo.read(tmp_path)
    (tmp_path / "run.json").write_text("{half")
    with pytest.raises(DataError, match=r"run\.json: not valid JSON"):
        RunInfo.read(tmp_path)


def test_version_1_run_json_still_reads(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps({"method": "croppaste", "category": "bottle", "data": "/d",
                                                   "size": 64, "train_good": ["/d/train/good/000.png"]}))
    info = RunInfo.read(tmp_path)
    assert info.training is None and info.complete is None and info.extra["train_good"]
    with pytest.raises(DataError, match="records no good training images"):
        info.good_images(tmp_path / "run.json")


def test_data_relative_paths(tmp_path):
    root = tmp_path / "data"
    assert data_relative(root / "train" / "good" / "000.png", root) == "train/good/000.png"
    assert data_relative(tmp_path / "other.png", root) == (tmp_path / "other.png").as_posix()


def test_manifest_round_trip_torn_line_and_rejected(tmp_path):
    (tmp_path / "run.json").write_text("{}")
    recs = [_pair(0), _pair(1, rejected=True, scores={"ars": 0.5}), _pair(2)]
    write_manifest(tmp_path, recs[:2])
    append_records(tmp_path, recs[2:])
    assert read_pairs(tmp_path, include_rejected=True) == recs
    assert [r.id for r in read_pairs(tmp_path)] == [recs[0].id, recs[2].id]  # rejected left out by default
    assert recs[0].base_type == "crack" and read_manifest(tmp_path)[0]["params"]["anything"] == [1, 2]
    with open(tmp_path / "manifest.jsonl", "ab") as fh:  # a crash while appending
        fh.write(b'{"id": "crack@0_0000')
    assert len(read_pairs(tmp_path, include_rejected=True)) == 3
    repair_manifest(tmp_path)
    assert (tmp_path / "manifest.jsonl").read_bytes().endswith(b"}\n")
    assert len(read_pairs(tmp_path, include_rejected=True)) == 3


def test_manifest_bad_record_is_one_line_naming_file_and_line(tmp_path):
    write_manifest(tmp_path, [_pair(0), _pair(1)])
    lines = (tmp_path / "manifest.jsonl").read_text().splitlines()
    doc = json.loads(lines[1])
    doc["seed"] = "one"
    (tmp_path / "manifest.jsonl").write_text(lines[0] + "\n" + json.dumps(doc) + "\n")
    with pytest.raises(DataError) as exc:
        read_pairs(tmp_path)
    _one_line(exc, tmp_path / "manifest.jsonl", "line 2", "'seed' must be an integer or null, got a string")
    (tmp_path / "manifest.jsonl").write_text("not json\n" + lines[0] + "\n")  # not a torn tail: an error
    with pytest.raises(DataError) as exc:
        read_pairs(tmp_path)
    _one_line(exc, tmp_path / "manifest.jsonl", "line 1", "not a JSON record")
    with pytest.raises(DataError, match="missing key 'mask'"):
        write_manifest(tmp_path, [{"id": "x", "defect_type": "crack", "image": "i.png"}])


def test_subtype_names():
    assert subtype_name("contamination", 1) == "contamination@1"
    assert base_type("contamination@1") == "contamination" == base_type("contamination")


def test_results_round_trip_and_errors(tmp_path):
    doc = {"category": "bottle", "data": "/d", "profile": "smoke", "seed": 0, "config": {"size": 64, "new": 1},
           "split": {"train_good": 3}, "created": "now", "version": "0.1",
           "methods": {"patchcore": {"status": "done", "kind": "baseline", "model": "patchcore",
                                     "localization": {"pixel": {"auroc": 0.9}}, "timings": {"total_s": 1.0},
                                     "n_pairs": 0, "run": None, "artifacts": {"maps": "m.npz"}, "note": "kept"}}}
    written = write_results(tmp_path / "results.json", doc)
    back = BenchmarkResults.read(tmp_path)
    assert isinstance(back.methods["patchcore"], MethodResult) and back.methods["patchcore"].extra == {"note": "kept"}
    assert back.to_dict() == written == json.loads((tmp_path / "results.json").read_text())
    bad = {**written, "methods": {"patchcore": {**written["methods"]["patchcore"], "n_pairs": "many"}}}
    (tmp_path / "results.json").write_text(json.dumps(bad))
    with pytest.raises(DataError) as exc:
        BenchmarkResults.read(tmp_path)
    _one_line(exc, tmp_path / "results.json", "'methods.patchcore.n_pairs' must be an integer or null")
    (tmp_path / "results.json").write_text(json.dumps({"category": "x"}))
    with pytest.raises(DataError, match="missing the 'methods' object"):
        BenchmarkResults.read(tmp_path)


def test_quality_round_trip_and_errors(tmp_path):
    q = QualityScores(types={"crack": {"n": 4, "is": 1.2, "ic_lpips": None}}, all={"n": 4, "is": 1.2},
                      references={"n": 2}, run="/r", method="croppaste", config={"size": 96})
    q.write(tmp_path)
    assert QualityScores.read(tmp_path) == q
    doc = json.loads((tmp_path / "quality.json").read_text())
    doc["all"] = [1, 2]
    (tmp_path / "quality.json").write_text(json.dumps(doc))
    with pytest.raises(DataError) as exc:
        QualityScores.read(tmp_path)
    _one_line(exc, tmp_path / "quality.json", "'all' must be an object, got a list")


def test_one_resume_check():
    refuse_other_job("out", {"seed": 1, "config": {"a": 1}}, {"seed": 1, "config": {"a": 1}}, ("seed", "config"))
    with pytest.raises(ConfigError, match=r"out: folder holds a different benchmark \(seed, config differ\)"):
        refuse_other_job("out", {"seed": 1, "config": {"a": 1}}, {"seed": 2, "config": {"a": 2}},
                         ("seed", "config"), what="benchmark")
