"""The command line as a whole: help texts, `python -m anomalyforge`, and OSErrors as one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import anomalyforge.cli as cli
from anomalyforge.cli import main
from anomalyforge.synth.base import available

REPO = Path(__file__).resolve().parents[1]


def help_text(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--help"])
    assert exc.value.code == 0
    return " ".join(capsys.readouterr().out.split())  # argparse wraps lines


def test_help_shows_defaults_and_method_names(capsys):
    gen = help_text(capsys, "generate")
    assert "pairs per defect type (default: 100)" in gen and "(default: 256)" in gen
    assert "(default: croppaste)" in gen and all(m in gen for m in available())
    bench = help_text(capsys, "benchmark")
    assert "patchcore" in bench and all(m in bench for m in available())
    assert "--profile PROFILE smoke, cpu, paper or auto" in bench and "training folds) (default: cpu)" in bench
    info = help_text(capsys, "info")
    assert "(default: 0.3333)" in info and "(default: 0.2)" in info and "(default: 128)" in info
    assert "(default: None)" not in info + gen + bench and "(default: False)" not in info + gen + bench
    assert "(default: 0.1)" in help_text(capsys, "export")


def test_python_dash_m_anomalyforge_help():
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-m", "anomalyforge", "--help"], capture_output=True, text=True,
                         env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("usage: anomalyforge") and "generate" in res.stdout and "benchmark" in res.stdout


def test_os_error_names_the_file_not_its_temp_file(tmp_path):
    err = PermissionError(13, "Permission denied", str(tmp_path / ".run.json.tmp"))
    assert cli.os_error_line(err) == f"{tmp_path / 'run.json'}: permission denied"
    blocker = tmp_path / "file"
    blocker.write_text("x")
    err = NotADirectoryError(20, "Not a directory", str(blocker / "out" / "run.json"))
    want = f"{blocker / 'out' / 'run.json'}: cannot create a folder there: {blocker} is a file"
    assert cli.os_error_line(err) == want
    assert cli.os_error_line(OSError(28, "No space left on device")) == "no space left on device"


def test_an_os_error_in_any_command_is_one_line_exit_2(tmp_path, capsys, monkeypatch):
    target = tmp_path / "bench" / "report.html"

    def disk_full(*args, **kwargs):
        target.parent.mkdir(parents=True)
        raise OSError(28, "No space left on device", str(target))

    monkeypatch.setattr(cli, "write_report", disk_full)
    assert main(["report", str(tmp_path), "--out", str(target)]) == 2
    err = capsys.readouterr().err
    assert err == f"anomalyforge: error: {target}: no space left on device\n"
    assert not (tmp_path / "bench").exists()  # the folder a failed command created, empty, is gone


def _tiny_mvtec(root: Path) -> Path:
    """A 6-image MVTec AD layout (good, one defect type with masks) for CLI-only tests."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for rel in ("train/good/000.png", "train/good/001.png", "train/good/002.png", "test/good/000.png",
                "test/dent/000.png", "test/dent/001.png"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(root / rel)
    for i in ("000", "001"):
        m = np.zeros((24, 24), np.uint8)
        m[4:12, 6:14] = 255
        (root / "ground_truth/dent").mkdir(parents=True, exist_ok=True)
        Image.fromarray(m).save(root / f"ground_truth/dent/{i}_mask.png")
    return root


def test_progress_bars_only_on_a_terminal_unless_asked(tmp_path, capsys):
    data = _tiny_mvtec(tmp_path / "cat")
    assert main(["info", str(data)]) == 0  # capsys: stderr is not a terminal
    assert "%|" not in capsys.readouterr().err
    assert main(["info", str(data), "--progress"]) == 0
    assert "verifying files:" in capsys.readouterr().err  # a tqdm bar: "... 0%|  | 0/6 ..."
    assert main(["-q", "info", str(data)]) == 0
    assert "%|" not in capsys.readouterr().err


def test_quiet_keeps_results_and_drops_notes(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli, "cluster_category", lambda *a, notes, **k: notes.append("only one defect") or {})
    monkeypatch.setattr(cli, "format_clusters", lambda clusters: "RESULT TABLE")
    assert main(["cluster", "--data", str(tmp_path), "--no-progress"]) == 0
    out, err = capsys.readouterr()
    assert "RESULT TABLE" in out and "note: only one defect" in err
    assert main(["-q", "cluster", "--data", str(tmp_path), "--no-progress"]) == 0
    out, err = capsys.readouterr()
    assert "RESULT TABLE" in out and "note:" not in err


def test_input_layout_is_layout_everywhere_and_format_is_a_deprecated_alias(tmp_path, capsys):
    data = _tiny_mvtec(tmp_path / "cat")
    assert main(["info", "--data", str(data), "--layout", "mvtec", "--no-verify"]) == 0
    out, err = capsys.readouterr()
    assert "[mvtec]" in out and "deprecated" not in err
    assert main(["info", str(data), "--format", "folder", "--no-verify"]) == 0  # the old spelling still works
    out, err = capsys.readouterr()
    assert "[folder]" in out and "warning: --format for the input layout is deprecated; use --layout" in err
    assert main(["info"]) == 2 and "as PATH or as --data PATH" in capsys.readouterr().err
    assert main(["info", str(data), "--data", str(data)]) == 2
    for cmd in ("generate", "benchmark", "cluster", "fewshot"):
        assert "--layout LAYOUT" in help_text(capsys, cmd), cmd
