"""Benchmarking existing runs under their own label (e.g. an ARS-filtered or sub-typed run)."""

import pytest

from anomalyforge.errors import DataError
from anomalyforge.formats.manifest import read_manifest, write_manifest
from anomalyforge.pipelines.benchmark import run_benchmark
from anomalyforge.synth.run import generate_run


def test_labelled_run_is_benchmarked_without_rejected_pairs(bottle_dir, tmp_path):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run = tmp_path / "run"
        generate_run(bottle_dir, run, method="croppaste", n=4, size=64, progress=False)
        records = read_manifest(run, include_rejected=True)
        # keep one pair per type and mark the rest rejected, as `anomalyforge filter` does
        seen: set[str] = set()
        for r in records:
            r["rejected"] = r["defect_type"] in seen
            seen.add(r["defect_type"])
        write_manifest(run, records)
        kept = len(read_manifest(run))
        files = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
        res = run_benchmark(bottle_dir, tmp_path / "b", [], profile="smoke",
                            runs={"croppaste+filtered": run}, progress=False)
    finally:
        torch.set_num_threads(before)
    entry = res["methods"]["croppaste+filtered"]
    assert entry["status"] == "done" and entry["n_pairs"] == kept == 3
    # the given run is read only: its quality scores go to the benchmark's own folder
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == files
    assert (tmp_path / "b" / entry["artifacts"]["quality"]).is_file()
    assert 0.0 <= entry["localization"]["pixel"]["ap"] <= 1.0


def test_labelled_run_must_be_a_run_folder(bottle_dir, tmp_path):
    with pytest.raises(DataError, match="not a generated run folder"):
        run_benchmark(bottle_dir, tmp_path / "b", [], profile="smoke",
                      runs={"mine": tmp_path}, progress=False)
