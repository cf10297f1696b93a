"""The report reads a method's generated run through the one manifest reader: pairs the ARS filter
rejected are neither shown nor counted, and a moved benchmark folder reads from any working folder."""

from __future__ import annotations

import shutil
from pathlib import Path

from anomalyforge.cli import main
from anomalyforge.formats.manifest import read_pairs, write_manifest
from anomalyforge.report.html import write_report

SHOWN = 'alt="generated '


def test_report_leaves_out_rejected_pairs(report_bench: Path, tmp_path: Path):
    bench = Path(shutil.copytree(report_bench, tmp_path / "b"))
    run = bench / "runs" / "cutpaste_like"
    recs = read_pairs(run)
    assert write_report(bench).read_text().count(SHOWN) == len(recs) == 2
    recs[0].rejected = True  # as `anomalyforge filter` marks it
    write_manifest(run, recs)
    with open(run / "manifest.jsonl", "ab") as fh:  # and a torn last line, as a crash leaves
        fh.write(b'{"id": "broken_')
    text = write_report(bench).read_text()
    assert text.count(SHOWN) == 1
    assert f"{SHOWN}{Path(recs[0].image).name}" not in text and f"{SHOWN}{Path(recs[1].image).name}" in text
    assert "could not be read" not in text and "not valid JSON" not in text


def test_report_of_a_moved_benchmark_from_another_folder(report_bench: Path, tmp_path: Path, monkeypatch):
    moved = tmp_path / "moved" / "bench"
    shutil.copytree(report_bench, moved)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert main(["report", "../moved/bench", "--out", "r.html", "--no-progress"]) == 0
    text = (work / "r.html").read_text()
    assert text.count(SHOWN) == 2 and "No generated run found" not in text
