"""`anomalyforge report BENCH_DIR [--out FILE]`."""

from __future__ import annotations

from pathlib import Path

from anomalyforge.cli import main


def test_cli_writes_report(report_bench: Path, tmp_path: Path, capsys):
    out = tmp_path / "r" / "bottle.html"
    assert main(["report", str(report_bench), "--out", str(out), "--no-progress"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert "cutpaste_like" in out.read_text()


def test_cli_error_is_one_line_exit_2(tmp_path: Path, capsys):
    out = tmp_path / "x.html"
    assert main(["report", str(tmp_path), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("anomalyforge: error: ") and "results.json" in err and "\n" not in err
    assert not out.exists()
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "benchmark folder not found" in capsys.readouterr().err
