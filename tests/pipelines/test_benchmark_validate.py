"""Bad input to `anomalyforge benchmark`: one line, exit 2, and nothing left behind (issue 14)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from anomalyforge.cli import main


@pytest.fixture(scope="module")
def small_copy(bottle_dir: Path, tmp_path_factory) -> Path:
    """A real copy (files, not links) of a few bottle images in the MVTec AD layout."""
    dst = tmp_path_factory.mktemp("data") / "bottle"
    picks = [("train/good", 6), ("test/good", 2)] + [(f"test/{t}", 3) for t in ("broken_large", "contamination")]
    for rel, k in picks:
        for p in sorted((bottle_dir / rel).glob("*.png"))[:k]:
            (dst / rel).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(p, dst / rel / p.name)
            if rel.startswith("test/") and not rel.endswith("good"):
                gt = dst / "ground_truth" / rel.split("/")[1]
                gt.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(bottle_dir / "ground_truth" / rel.split("/")[1] / f"{p.stem}_mask.png",
                                gt / f"{p.stem}_mask.png")
    return dst


def bench(capsys, data: Path, out: Path, *argv: str) -> tuple[int, str]:
    rc = main(["benchmark", "--data", str(data), "--out", str(out), "--profile", "smoke", "--no-progress",
               "--no-quality", *argv])
    return rc, capsys.readouterr().err


def one_line(rc: int, err: str, *needles: str) -> None:
    assert rc == 2 and err.startswith("anomalyforge: error: ") and err.count("\n") == 1, err
    assert all(n in err for n in needles), err


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_out_inside_data_is_refused(small_copy, capsys):
    before = tree(small_copy)
    for out in (small_copy / "bench", small_copy / "test" / "gen", small_copy):
        rc, err = bench(capsys, small_copy, out, "--methods", "patchcore")
        one_line(rc, err, str(out), "inside the dataset")
        rc, err = bench(capsys, small_copy, out, "--methods", "patchcore", "--seeds", "0,1")
        one_line(rc, err, "inside the dataset")
    assert tree(small_copy) == before


def test_run_for_a_method_not_in_methods_is_refused(small_copy, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text("{}")
    rc, err = bench(capsys, small_copy, tmp_path / "b", "--methods", "patchcore", "--run", f"croppaste={run}")
    one_line(rc, err, "--run croppaste=", "'croppaste' is not in --methods")
    assert not (tmp_path / "b").exists()


def test_failed_benchmark_removes_only_what_it_created(small_copy, tmp_path, capsys):
    missing = tmp_path / "no-such-run"
    out = tmp_path / "new" / "bench"
    rc, err = bench(capsys, small_copy, out, "--methods", "croppaste", "--run", f"croppaste={missing}")
    one_line(rc, err, str(missing), "generated run folder not found")
    assert not (tmp_path / "new").exists()  # created by this call, so removed again
    kept = tmp_path / "existing"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    rc, err = bench(capsys, small_copy, kept, "--methods", "croppaste", "--run", f"croppaste={missing}")
    one_line(rc, err, "generated run folder not found")
    assert tree(kept) == ["notes.txt"]  # a folder that existed before is never removed
    empty = tmp_path / "empty"
    empty.mkdir()
    rc, err = bench(capsys, small_copy, empty, "--methods", "croppaste", "--run", f"croppaste={missing}")
    assert rc == 2 and empty.is_dir() and not any(empty.iterdir())
