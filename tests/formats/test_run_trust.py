"""Runs later stages can trust: the training files they were made from, paths that survive a
move or another working folder, completeness, and re-checked PNG hashes on resume."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import anomalyforge.synth.run as run_mod
from anomalyforge.atomic import write_png_atomic
from anomalyforge.cli import main
from anomalyforge.data.io import read_image
from anomalyforge.formats.manifest import read_pairs
from anomalyforge.formats.run import RunInfo, sha256_file
from anomalyforge.report.preview import HEADER_H, LABEL_H, TILE
from anomalyforge.synth.run import generate_run

KW = dict(n=3, size=64, progress=False, seed=1)


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


def _error_line(capsys) -> str:
    """The one error line of a failed command; any other stderr lines must be warnings."""
    lines = capsys.readouterr().err.strip().splitlines()
    errors = [ln for ln in lines if ln.startswith("anomalyforge: error: ")]
    assert len(errors) == 1 and all(ln.startswith("warning: ") for ln in lines if ln not in errors), lines
    return errors[0]


def _err(capsys) -> str:
    """stderr without the dataset's own DataWarning lines (shown when warnings are not captured)."""
    lines = capsys.readouterr().err.strip().splitlines()
    return "\n".join(x for x in lines if "DataWarning" not in x and not x.startswith("  "))


def test_run_json_records_training_files_and_completion(small_bottle, tmp_path):
    run = tmp_path / "run"
    generate_run(small_bottle, run, **KW)
    info = RunInfo.read(run)
    assert info.complete is True and info.expected_pairs == 6 and info.data == str(small_bottle)
    assert [f.path for f in info.training.good] == [f"train/good/{i:03d}.png" for i in range(6)]
    ref = info.training.defects["broken_large"][0]
    assert (ref.path, ref.mask) == ("test/broken_large/000.png", "ground_truth/broken_large/000_mask.png")
    assert ref.sha256 == sha256_file(small_bottle / ref.path)
    assert ref.mask_sha256 == sha256_file(small_bottle / ref.mask)
    for r in read_pairs(run):
        assert r.image_sha256 == sha256_file(run / r.image) and r.mask_sha256 == sha256_file(run / r.mask)
        assert (small_bottle / r.source).is_file() and not Path(r.source).is_absolute()


def test_a_run_made_from_other_training_files_is_refused(small_bottle, tmp_path, capsys):
    run = tmp_path / "run"
    generate_run(small_bottle, run, **KW)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    # an empty mask takes broken_large/000 out of the few-shot training part: it is a test image now
    mask = small_bottle / "ground_truth" / "broken_large" / "000_mask.png"
    write_png_atomic(mask, np.zeros((512, 512), np.uint8))  # replaces the link, not the shared file
    moved = str(small_bottle / "test" / "broken_large" / "000.png")
    bench = tmp_path / "bench"
    assert main(["benchmark", "--data", str(small_bottle), "--methods", "croppaste", "--run", f"croppaste={run}",
                 "--profile", "smoke", "--out", str(bench), "--no-progress"]) == 2
    err = _error_line(capsys)  # after the data warning about the emptied mask: one error line
    assert moved in err and "not in the current training split" in err
    assert not bench.exists()
    for argv in (["filter", str(run), "--keep", "2", "--no-progress"],
                 ["quality", str(run), "--no-progress", "--classifier-weights", "none", "--lpips-weights", "none"],
                 ["export", str(run), str(tmp_path / "export")]):
        assert main(argv) == 2, argv
        err = _error_line(capsys)
        assert moved in err, (argv, err)
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before  # nothing written into the run
    assert not (tmp_path / "export").exists()


def test_a_changed_training_file_is_refused(small_bottle, tmp_path, capsys):
    run = tmp_path / "run"
    generate_run(small_bottle, run, **KW)
    good = small_bottle / "train" / "good" / "003.png"
    img = read_image(good).copy()
    img[:8] = 0
    write_png_atomic(good, img)
    assert main(["export", str(run), str(tmp_path / "export")]) == 2
    err = _err(capsys)
    assert str(good) in err and "changed since the run was made" in err


def test_runs_work_from_another_folder_and_after_moving(small_bottle, tmp_path, monkeypatch, capsys):
    start = tmp_path / "start"
    start.mkdir()
    monkeypatch.chdir(start)
    rel_data = os.path.relpath(small_bottle, start)  # a relative --data, as users type it
    assert main(["generate", "--data", rel_data, "--out", "run", "--n", "3", "--size", "64", "--no-progress"]) == 0
    moved = tmp_path / "elsewhere" / "run"
    moved.parent.mkdir()
    shutil.move(str(start / "run"), moved)
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.chdir(other)
    capsys.readouterr()
    assert main(["preview", str(moved), "--out", "sheet.png"]) == 0
    sheet = read_image(other / "sheet.png")
    source_tile = sheet[HEADER_H + LABEL_H:HEADER_H + LABEL_H + TILE, :TILE]
    assert source_tile.std() > 5  # the real source image, not the grey 'source moved' placeholder
    assert main(["export", str(moved), "exported"]) == 0
    exported = other / "exported" / "bottle"
    index = json.loads((exported / "anomalyforge_export.json").read_text())
    goods = [*index["train_good"].values(), *index["test_good"].values(), *index["split"]["background_only_goods"]]
    assert len(goods) == 6 and all(Path(g).is_file() for g in goods)  # every good of the run, found from here
    index = json.loads((exported / "anomalyforge_export.json").read_text())
    assert all(Path(p).is_file() for p in index["train_good"].values())
    capsys.readouterr()
    assert main(["quality", str(moved), "--no-progress", "--per-cluster", "2", "--classifier-weights", "none",
                 "--lpips-weights", "none", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["all"]["n"] == 6
    assert main(["filter", str(moved), "--keep", "2", "--steps", "2", "--no-progress"]) == 0
    out = capsys.readouterr()
    assert "kept 2/3" in out.out and "warning" not in out.err


def _interrupted(small_bottle, out, monkeypatch, after: int) -> None:
    calls = {"n": 0}
    real = run_mod.write_png_atomic

    def flaky(path, arr):
        calls["n"] += 1
        if calls["n"] > after:
            raise KeyboardInterrupt
        real(path, arr)

    monkeypatch.setattr(run_mod, "write_png_atomic", flaky)
    with pytest.raises(KeyboardInterrupt):
        generate_run(small_bottle, out, **KW)
    monkeypatch.setattr(run_mod, "write_png_atomic", real)


def test_incomplete_runs_warn_or_are_refused(small_bottle, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    _interrupted(small_bottle, run, monkeypatch, after=7)
    k = len(read_pairs(run, include_rejected=True))
    assert 0 < k < 6 and RunInfo.read(run).complete is False
    capsys.readouterr()
    assert main(["preview", str(run)]) == 0
    assert f"warning: {run}: incomplete run ({k} of 6 pairs)" in _err(capsys).splitlines()
    assert main(["export", str(run), str(tmp_path / "e1")]) == 0
    assert f"warning: {run}: incomplete run ({k} of 6 pairs)" in _err(capsys)
    for argv in (["preview", str(run), "--out", str(tmp_path / "p.png")], ["export", str(run), str(tmp_path / "e2")],
                 ["quality", str(run), "--no-progress", "--classifier-weights", "none", "--lpips-weights", "none"]):
        assert main([*argv, "--require-complete"]) == 2
        err = _err(capsys)
        assert f"incomplete run ({k} of 6 pairs)" in err and "\n" not in err
    assert not (tmp_path / "p.png").exists() and not (tmp_path / "e2").exists()
    generate_run(small_bottle, run, **KW)  # finishing it marks it complete
    assert RunInfo.read(run).complete is True
    assert main(["preview", str(run), "--require-complete"]) == 0
    assert "warning" not in _err(capsys)


def test_resume_redraws_pairs_whose_files_changed(small_bottle, tmp_path, capsys):
    clean = tmp_path / "clean"
    generate_run(small_bottle, clean, **KW)
    run = tmp_path / "run"
    shutil.copytree(clean, run)
    recs = read_pairs(run)
    write_png_atomic(run / recs[0].image, np.zeros((64, 64, 3), np.uint8))  # damaged on disk
    (run / recs[1].mask).unlink()  # lost
    capsys.readouterr()
    s = generate_run(small_bottle, run, **KW)
    assert s["new"] == 2 and "2 pair(s) listed in the manifest are missing or changed" in _err(capsys)
    for a in clean.rglob("*.png"):
        assert (run / a.relative_to(clean)).read_bytes() == a.read_bytes()
    assert sorted(r.id for r in read_pairs(run)) == sorted(r.id for r in recs)
