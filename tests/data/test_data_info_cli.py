"""`anomalyforge info` on the real data, and every bad input through the CLI and the library."""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from datalayouts import H, W, make_mvtec, tree, write_image, write_mask
from PIL import Image

from anomalyforge.cli import main
from anomalyforge.data import load_dataset
from anomalyforge.data.info import format_info_table
from anomalyforge.errors import ConfigError, DataError


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(["info", *argv, "--no-progress"])
    out, err = capsys.readouterr()
    return rc, out, err


def run_json(capsys, *argv: str):
    rc, out, err = run(capsys, *argv, "--json")
    assert rc == 0, err
    return json.loads(out), err


# ---- real data -------------------------------------------------------------------------------
def test_info_bottle_json(capsys, bottle_dir: Path):
    info, err = run_json(capsys, str(bottle_dir))
    assert info["category"] == "bottle" and info["format"] == "mvtec" and info["root"] == str(bottle_dir)
    assert info["counts"] == {"train/good": 209, "test/good": 20, "test/broken_large": 20,
                              "test/broken_small": 22, "test/contamination": 21}
    assert info["few_shot"] == {"broken_large": {"train": 7, "test": 13},
                                "broken_small": {"train": 8, "test": 14},
                                "contamination": {"train": 7, "test": 14}}
    assert info["good"] == {"train": 209, "test": 20}
    assert info["warnings"] == [] and err == ""


def test_info_juice_bottle_json(capsys, juice_dir: Path):
    info, _ = run_json(capsys, str(juice_dir), "--no-verify")
    assert info["format"] == "mvtec_loco"
    assert info["counts"]["test/logical_anomalies"] == 142 and info["counts"]["validation/good"] == 54
    assert info["few_shot"]["logical_anomalies"] == {"train": 48, "test": 94}
    assert info["good"]["test"] == 54 and info["test_good_from"] == "validation/good"


def test_info_magnetic_tile_json_reports_empty_masks(capsys, mtile_dir: Path):
    info, err = run_json(capsys, str(mtile_dir), "--no-verify")
    assert info["category"] == "magnetic_tile" and info["format"] == "magnetic_tile"
    assert set(info["few_shot"]) == {"blowhole", "break", "crack", "fray", "uneven"}
    assert info["few_shot"]["uneven"] == {"train": math.ceil((103 - 4) / 3), "test": 103 - 33}
    assert info["counts"]["train/good"] == 952
    assert info["good"] == {"train": 952 - 190, "test": 190}
    empty = [w for w in info["warnings"] if "empty mask" in w]
    assert len(empty) == 4 and all(w.startswith("uneven:") for w in empty)
    assert err.count("warning: magnetic_tile: uneven:") == 4
    again, _ = run_json(capsys, str(mtile_dir), "--no-verify")
    assert again == info  # deterministic held-out good images


def test_info_human_table(capsys, bottle_dir: Path):
    rc, out, _ = run(capsys, str(bottle_dir), "--no-verify")
    assert rc == 0
    lines = out.splitlines()
    assert lines[0].startswith("bottle") and "mvtec" in lines[0]
    row = next(line for line in lines if "test/broken_small" in line).split()
    assert row == ["test/broken_small", "22", "8", "14"]
    header = next(line for line in lines if "split/type" in line)
    # columns are right-aligned under their headers
    assert all(line.rstrip().endswith(("13", "14")) and len(line) == len(header)
               for line in lines if line.strip().startswith("test/b"))
    assert "209 train, 20 test" in out


def test_info_several_categories_gives_a_list(capsys, datasets_root: Path):
    rc, out, _ = run(capsys, str(datasets_root), "--json", "--no-verify")
    assert rc == 0
    infos = json.loads(out)
    assert {i["category"] for i in infos} == {"bottle", "juice_bottle", "magnetic_tile"}
    info, _ = run_json(capsys, str(datasets_root), "--category", "bottle", "--no-verify")
    assert info["counts"]["test/broken_large"] == 20
    table = format_info_table(infos)
    assert all(f"{i['category']}  [{i['format']}]" in table for i in infos)


def test_paths_with_spaces_and_non_ascii_work(capsys, tmp_path: Path, bottle_dir: Path):
    root = tmp_path / "my data" / "bottlé"
    for rel in ["train/good/000.png", "train/good/001.png", "test/good/000.png",
                "test/broken_large/000.png", "test/broken_large/001.png",
                "ground_truth/broken_large/000_mask.png", "ground_truth/broken_large/001_mask.png"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(bottle_dir / rel, root / rel)
    info, _ = run_json(capsys, str(root))
    assert info["category"] == "bottlé" and info["root"] == str(root)
    assert info["few_shot"] == {"broken_large": {"train": 1, "test": 1}}
    info, _ = run_json(capsys, str(tmp_path / "my data"), "--category", "bottlé")
    assert info["good"] == {"train": 2, "test": 1}


# ---- bad input: one-line error naming the file, exit 2, nothing written ----------------------
def expect_error(capsys, path: Path, *argv: str, names: str, problem: str, watch: Path | None = None) -> None:
    watch = watch or (path if path.is_dir() else path.parent)
    before = tree(watch) if watch.exists() else None
    rc, out, err = run(capsys, str(path), *argv)
    assert rc == 2 and out == ""
    assert err.startswith("anomalyforge: error: ") and err.count("\n") == 1, err
    assert names in err and problem in err, err
    if before is not None:
        assert tree(watch) == before


def test_missing_folder(capsys, tmp_path: Path):
    expect_error(capsys, tmp_path / "nope", names=str(tmp_path / "nope"), problem="folder not found",
                 watch=tmp_path)
    with pytest.raises(DataError, match="folder not found"):
        load_dataset(tmp_path / "nope")


def test_empty_folder(capsys, tmp_path: Path):
    (tmp_path / "empty").mkdir()
    expect_error(capsys, tmp_path / "empty", names=str(tmp_path / "empty"), problem="folder is empty")
    with pytest.raises(DataError, match="folder is empty"):
        load_dataset(tmp_path / "empty")


def test_unknown_layout(capsys, tmp_path: Path):
    write_image(tmp_path / "stuff" / "a" / "x.png")
    (tmp_path / "stuff" / "notes.txt").write_text("hello")
    expect_error(capsys, tmp_path / "stuff", names=str(tmp_path / "stuff"), problem="unknown dataset layout")
    with pytest.raises(DataError, match="unknown dataset layout"):
        load_dataset(tmp_path / "stuff")


def test_category_without_training_folder(capsys, tmp_path: Path):
    root = make_mvtec(tmp_path / "w")
    shutil.rmtree(root / "train")
    expect_error(capsys, root, names=str(root / "train"), problem="folder not found")
    (root / "train" / "bad").mkdir(parents=True)
    with pytest.raises(DataError, match="train/good or train/ok") as exc:
        load_dataset(root)
    assert exc.value.path == root / "train" / "good"


def test_unknown_category(capsys, tmp_path: Path):
    make_mvtec(tmp_path / "root" / "alpha")
    make_mvtec(tmp_path / "root" / "beta")
    expect_error(capsys, tmp_path / "root", "--category", "gamma", names="'gamma'", problem="available: alpha, beta")
    rc, out, err = run(capsys, str(tmp_path / "root" / "alpha"), "--category", "gamma")
    assert rc == 2 and "available: alpha" in err
    with pytest.raises(ConfigError, match="unknown category"):
        load_dataset(tmp_path / "root", category="gamma")


def test_truncated_image(capsys, tmp_path: Path):
    root = make_mvtec(tmp_path / "w")
    bad = write_image(root / "train" / "good" / "001.png", (64, 64))
    bad.write_bytes(bad.read_bytes()[:-200])  # header intact, pixel data cut
    expect_error(capsys, root, names=str(bad), problem="cannot read image")
    tiny = root / "train" / "good" / "002.png"
    tiny.write_bytes(tiny.read_bytes()[:20])  # cut inside the header: found without decoding
    with pytest.raises(DataError) as exc:
        load_dataset(root)
    assert exc.value.path == tiny


def test_mask_size_mismatch(capsys, tmp_path: Path):
    root = make_mvtec(tmp_path / "w")
    bad = write_mask(root / "ground_truth" / "dent" / "001_mask.png", (20, 20))
    expect_error(capsys, root, names=str(bad), problem="mask is 20x20 but its image 001.png is 40x30")
    with pytest.raises(DataError) as exc:
        load_dataset(root)
    assert exc.value.path == bad


def test_unreadable_mask(capsys, tmp_path: Path):
    root = make_mvtec(tmp_path / "w")
    bad = root / "ground_truth" / "scratch" / "002_mask.png"
    bad.write_bytes(b"\x89PNG garbage")
    expect_error(capsys, root, names=str(bad), problem="cannot read image")
    with pytest.raises(DataError) as exc:
        load_dataset(root)
    assert exc.value.path == bad


def test_defect_type_folder_without_images(capsys, tmp_path: Path):
    root = make_mvtec(tmp_path / "w")
    (root / "test" / "hole").mkdir()
    (root / "test" / "hole" / "readme.txt").write_text("todo")
    expect_error(capsys, root, names=str(root / "test" / "hole"), problem="defect type folder holds no images")
    with pytest.raises(DataError, match="holds no images"):
        load_dataset(root)


def test_bad_options(capsys, tmp_path: Path):
    root = make_mvtec(tmp_path / "w")
    expect_error(capsys, root, "--layout", "nope", names="'nope'", problem="unknown data format")
    expect_error(capsys, root, "--ratio", "0", names="ratio", problem="(0, 1)")
    expect_error(capsys, root, "--mask-threshold", "300", names="threshold", problem="1..255")


_WRITES: list[str] | None = None  # while a list: every write-like file operation under _WATCHED
_WATCHED: list[Path] = []


def _audit(event: str, args: tuple) -> None:
    """sys.audit hook (installed once, active only while _WRITES is a list): records opens for
    writing and renames / removals / mkdirs / chmods under the watched folder. chmod alone proves
    nothing when the tests run as root (root writes into 0o555 folders)."""
    if _WRITES is None:
        return
    if event == "open":
        path, mode, flags = (list(args) + [None, None])[:3]
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND))
        paths = [path] if writing else []
    elif event in ("os.rename", "os.replace", "os.remove", "os.unlink", "os.rmdir", "os.mkdir", "os.chmod",
                   "os.truncate", "os.link", "os.symlink", "shutil.copyfile", "shutil.move", "shutil.rmtree"):
        paths = [a for a in args[:2] if isinstance(a, (str, bytes, os.PathLike))]
    else:
        return
    for a in paths:
        if isinstance(a, (str, os.PathLike)) and any(Path(os.path.abspath(a)).is_relative_to(w) for w in _WATCHED):
            _WRITES.append(f"{event} {a}")


sys.addaudithook(_audit)


def test_read_only_dataset_is_never_written(tmp_path: Path, capsys):
    global _WRITES
    root = make_mvtec(tmp_path / "w")
    before = {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
    os.chmod(root, 0o555)
    _WATCHED[:] = [root.resolve()]
    _WRITES = []
    try:
        assert main(["info", str(root), "--json", "--no-progress"]) == 0
        writes, _WRITES = _WRITES, None
    finally:
        _WRITES = None
        os.chmod(root, 0o755)
    capsys.readouterr()
    assert writes == []  # nothing opened for writing, renamed, removed or created under the dataset
    assert {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()} == before
    shutil.rmtree(root)


def test_the_write_watch_sees_writes(tmp_path: Path):
    """The watch above is not vacuous: a write, a rename and a mkdir under the folder are seen."""
    global _WRITES
    _WATCHED[:] = [tmp_path.resolve()]
    _WRITES = []
    try:
        (tmp_path / "a.txt").write_text("x")
        os.replace(tmp_path / "a.txt", tmp_path / "b.txt")
        (tmp_path / "d").mkdir()
        (tmp_path / "b.txt").read_text()  # reading is fine
        seen, _WRITES = _WRITES, None
    finally:
        _WRITES = None
    assert {e.split()[0] for e in seen} == {"open", "os.rename", "os.mkdir"}  # os.replace audits as os.rename


# ---- silent acceptance: what info now warns about (issue 14, item 8) --------------------------
def info_warnings(capsys, root: Path) -> tuple[list[str], str, str]:
    rc, out, err = run(capsys, str(root))
    assert rc == 0, err
    return [ln for ln in err.splitlines() if ln.startswith("warning: ")], out, err


def test_grey_mask_is_reported_with_how_it_is_binarised(capsys, tmp_path: Path):
    root = make_mvtec(tmp_path / "w")
    grey = root / "ground_truth" / "scratch" / "001_mask.png"
    ramp = np.tile(np.linspace(0, 255, W, dtype=np.uint8), (H, 1))  # 0..255: a soft mask
    Image.fromarray(ramp, "L").save(grey)
    labels = root / "ground_truth" / "dent" / "002_mask.png"
    lab = np.zeros((H, W), np.uint8)
    lab[2:8, 2:8], lab[10:20, 10:20] = 1, 2  # class ids 0, 1, 2 (VisA style)
    Image.fromarray(lab, "L").save(labels)
    warned, out, _ = info_warnings(capsys, root)
    assert "warnings: 2" in out
    soft = next(w for w in warned if "not binary" in w)
    assert str(grey) in soft and "binarised at grey level 128" in soft and "pixels >= 128 are defect" in soft
    label = next(w for w in warned if "label map" in w)
    assert str(labels) in label and "every non-zero pixel is defect" in label
    rc, out, err = run(capsys, str(root), "--mask-threshold", "200")
    assert rc == 0 and "binarised at grey level 200" in err


def test_masks_without_images_are_reported(capsys, tmp_path: Path):
    root = make_mvtec(tmp_path / "w")
    orphan = write_mask(root / "ground_truth" / "scratch" / "009_mask.png")
    stray = write_mask(root / "ground_truth" / "hole" / "000_mask.png")  # no test/hole at all
    warned, out, _ = info_warnings(capsys, root)
    assert "warnings: 2" in out
    assert any(f"mask without image: {orphan}" in w for w in warned), warned
    assert any("no test/hole" in w and str(stray.parent) in w for w in warned), warned


def test_data_without_defects_is_reported(capsys, tmp_path: Path):
    root = tmp_path / "w"
    for i in range(3):
        write_image(root / "train" / "good" / f"{i:03d}.png", seed=i)
    write_image(root / "test" / "good" / "000.png", seed=9)
    warned, out, _ = info_warnings(capsys, root)
    assert "warnings: 1" in out
    assert len(warned) == 1 and "no defect images" in warned[0] and str(root) in warned[0]


def test_magnetic_tile_soft_masks_are_reported(capsys, tmp_path: Path):
    root = tmp_path / "mt"
    write_image(root / "MT_Free" / "Imgs" / "exp1_num_1.jpg", mode="L")
    write_image(root / "MT_Free" / "Imgs" / "exp1_num_2.jpg", mode="L", seed=2)
    write_image(root / "MT_Crack" / "Imgs" / "exp1_num_3.jpg", mode="L", seed=3)
    write_mask(root / "MT_Crack" / "Imgs" / "exp1_num_3.png")
    orphan = write_mask(root / "MT_Crack" / "Imgs" / "exp1_num_4.png")  # its .jpg is missing
    warned, _, _ = info_warnings(capsys, root)
    assert any(f"mask without image: {orphan}" in w for w in warned), warned
