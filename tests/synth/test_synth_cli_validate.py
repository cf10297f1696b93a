"""Bad input to generate / export / filter / cluster / fewshot through the CLI: one line
`anomalyforge: error: PATH: problem`, exit 2, nothing half-written (issue 14, trust holes).
Every bad input is a copy under tmp_path."""

from __future__ import annotations

import builtins
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from anomalyforge.cli import main
from anomalyforge.data import DataWarning
from anomalyforge.formats.manifest import read_manifest
from anomalyforge.synth.run import generate_run

GEN = ["--method", "cutpaste", "--n", "1", "--size", "64", "--no-progress"]


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def one_line_error(rc: int, err: str, *needles: str) -> None:
    assert rc == 2, err
    assert err.startswith("anomalyforge: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for n in needles:
        assert n in err, err


def copy_data(src: Path, dst: Path) -> Path:
    """A real copy (files, not links) of the small bottle layout, to break."""
    shutil.copytree(src, dst, symlinks=False)
    return dst


def truncate(path: Path) -> Path:
    data = path.read_bytes()
    path.unlink()  # the copy may share nothing with the original, but never write through a link
    path.write_bytes(data[: len(data) // 2])  # header intact, pixel data cut
    return path


@pytest.fixture(scope="module")
def data_copy(small_bottle, tmp_path_factory) -> Path:
    return copy_data(small_bottle, tmp_path_factory.mktemp("copy") / "bottle")


@pytest.fixture(scope="module")
def run(data_copy, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run") / "run"
    generate_run(data_copy, out, method="cutpaste", n=1, size=64, progress=False)
    return out


# ---- item 3: OSErrors are one line, exit 2 --------------------------------------------------
def test_out_below_a_regular_file(data_copy, tmp_path, capsys):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file, not a folder")
    rc, out, err = cli(capsys, "generate", "--data", str(data_copy), "--out", str(blocker / "run"), *GEN)
    one_line_error(rc, err, str(blocker / "run"), f"{blocker} is a file")
    assert out == "" and blocker.read_text() == "a file, not a folder"


def test_read_only_output_folder(data_copy, tmp_path, capsys, monkeypatch):
    out = tmp_path / "ro"
    out.mkdir()
    if os.geteuid() != 0:
        os.chmod(out, 0o555)
    else:  # root writes through chmod: refuse writes below `out` the way a read-only folder does
        real_open = builtins.open

        def open_read_only(file, mode="r", *args, **kwargs):
            if any(m in mode for m in "wax+") and str(file).startswith(str(out)):
                raise PermissionError(13, "Permission denied", str(file))
            return real_open(file, mode, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", open_read_only)
    try:
        rc, _, err = cli(capsys, "generate", "--data", str(data_copy), "--out", str(out), *GEN)
    finally:
        os.chmod(out, 0o755)
    one_line_error(rc, err, str(out / "run.json"), "permission denied")
    assert ".tmp" not in err
    assert out.is_dir() and not any(out.iterdir())  # a folder that existed before is kept


def test_export_to_a_file(run, tmp_path, capsys):
    target = tmp_path / "export.zip"
    target.write_bytes(b"not a folder")
    rc, _, err = cli(capsys, "export", str(run), str(target))
    one_line_error(rc, err, str(target), "not a folder")
    assert target.read_bytes() == b"not a folder"
    rc, _, err = cli(capsys, "export", str(run), str(target / "below"))
    one_line_error(rc, err, f"{target} is a file")


# ---- item 4: every training file is checked before anything is written ----------------------
def test_bad_few_shot_and_good_images_are_all_reported_before_writing(small_bottle, tmp_path, capsys):
    data = copy_data(small_bottle, tmp_path / "bottle")
    bad = [truncate(p) for p in sorted((data / "train" / "good").glob("*.png"))]  # 8 good images
    bad += [truncate(data / "test" / t / "000.png") for t in ("broken_large", "broken_small", "contamination")]
    for n in ("1", "3"):  # whatever is drawn: before the fix, n=1 never drew some of them
        out = tmp_path / f"run{n}"
        rc, _, err = cli(capsys, "generate", "--data", str(data), "--out", str(out), "--method", "croppaste",
                         "--n", n, "--size", "64", "--no-progress")
        one_line_error(rc, err, "11 bad few-shot training files", "cannot read image", "and 1 more")
        assert sum(str(p) in err for p in bad) == 10  # the first ten named, the rest counted
        assert not out.exists()


def test_bad_masks_are_all_reported_before_writing(small_bottle, tmp_path, capsys):
    data = copy_data(small_bottle, tmp_path / "bottle")
    bad = [truncate(data / "ground_truth" / t / "001_mask.png") for t in ("broken_large", "contamination")]
    out = tmp_path / "run"
    rc, _, err = cli(capsys, "generate", "--data", str(data), "--out", str(out), *GEN)
    one_line_error(rc, err, "2 bad masks", str(bad[0]), str(bad[1]), "cannot read image")
    assert not out.exists()


def test_one_bad_file_is_named_alone(small_bottle, tmp_path, capsys):
    data = copy_data(small_bottle, tmp_path / "bottle")
    bad = truncate(data / "train" / "good" / "003.png")
    out = tmp_path / "run"
    rc, _, err = cli(capsys, "generate", "--data", str(data), "--out", str(out), *GEN)
    one_line_error(rc, err, f"error: {bad}: cannot read image")
    assert not out.exists()


# ---- item 5: --out inside --data is refused ---------------------------------------------------
def test_generate_out_inside_data_is_refused(data_copy, capsys):
    before = sorted(p.relative_to(data_copy) for p in data_copy.rglob("*"))
    for out in (data_copy / "runs" / "cp", data_copy, data_copy / "test" / "gen"):
        rc, _, err = cli(capsys, "generate", "--data", str(data_copy), "--out", str(out), *GEN)
        one_line_error(rc, err, str(out), "inside the dataset")
    assert sorted(p.relative_to(data_copy) for p in data_copy.rglob("*")) == before
    rc, _, err = cli(capsys, "info", str(data_copy), "--no-progress", "--no-verify")
    assert rc == 0, err


def test_export_cluster_fewshot_out_inside_data_are_refused(run, data_copy, capsys):
    before = sorted(p.relative_to(data_copy) for p in data_copy.rglob("*"))
    cases = [["export", str(run), str(data_copy / "exported")],
             ["cluster", "--data", str(data_copy), "--out", str(data_copy / "clusters"), "--no-progress"],
             ["fewshot", "--data", str(data_copy), "--out", str(data_copy / "fs"), "--shots", "1", "--seeds", "0",
              "--generated", "0", "--profile", "smoke", "--no-progress"]]
    for argv in cases:
        rc, _, err = cli(capsys, *argv)
        one_line_error(rc, err, "inside the dataset")
    assert sorted(p.relative_to(data_copy) for p in data_copy.rglob("*")) == before


# ---- item 8: --types , and filter --keep 0 ------------------------------------------------------
def test_empty_types_is_an_error(data_copy, tmp_path, capsys):
    out = tmp_path / "o"
    for types in (",", " , ", ""):
        rc, _, err = cli(capsys, "generate", "--data", str(data_copy), "--out", str(out), "--types", types, *GEN)
        one_line_error(rc, err, "--types", "no defect type named")
        assert not out.exists()


def test_filter_keep_zero_is_an_error(run, capsys):
    before = (run / "manifest.jsonl").read_bytes()
    rc, _, err = cli(capsys, "filter", str(run), "--keep", "0", "--no-progress")
    one_line_error(rc, err, "--keep must be at least 1", "reject every pair")
    assert (run / "manifest.jsonl").read_bytes() == before
    assert not (run / "ars").exists()


# ---- item 9: data warnings are one line `warning: FILE: problem` ------------------------------
def test_data_warnings_print_as_one_line_each(small_bottle, tmp_path, capsys):
    data = copy_data(small_bottle, tmp_path / "bottle")
    mask = data / "ground_truth" / "broken_large" / "000_mask.png"
    mask.unlink()
    Image.fromarray(np.zeros((512, 512), np.uint8)).save(mask)
    # the DataWarning category is kept: Python callers can still silence it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        rc, _, err = cli(capsys, "generate", "--data", str(data), "--out", str(tmp_path / "quiet"), *GEN)
    assert rc == 0 and "warning" not in err, err
    out = tmp_path / "run"
    rc, _, err = cli(capsys, "generate", "--data", str(data), "--out", str(out), *GEN)
    assert rc == 0, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines == [f"warning: {mask}: bottle/broken_large: defect image 000.png has an empty mask; "
                     f"kept for testing only"], err
    assert len(read_manifest(out)) == 3
