"""Benchmarking existing runs under their own label (e.g. an ARS-filtered or sub-typed run)."""

import numpy as np
import pytest

import anomalyforge.pipelines.train as train_mod
from anomalyforge.errors import DataError
from anomalyforge.formats.manifest import read_manifest, read_pairs, write_manifest
from anomalyforge.inspect.pairs import GeneratedPairs
from anomalyforge.pipelines.benchmark import run_benchmark
from anomalyforge.synth.run import generate_run


def _fingerprints(pairs: GeneratedPairs) -> list[tuple[str, bytes, bytes]]:
    return sorted((t, im.tobytes(), m.tobytes()) for t, im, m in zip(pairs.types, pairs.images, pairs.masks,
                                                                     strict=True))


def test_labelled_run_is_benchmarked_without_rejected_pairs(bottle_dir, tmp_path, monkeypatch):
    run = tmp_path / "run"
    generate_run(bottle_dir, run, method="croppaste", n=4, size=64, progress=False)
    records = read_manifest(run, include_rejected=True)
    # keep one pair per type and mark the rest rejected, as `anomalyforge filter` does
    seen: set[str] = set()
    for r in records:
        r["rejected"] = r["defect_type"] in seen
        seen.add(r["defect_type"])
    write_manifest(run, records)
    every = read_pairs(run, include_rejected=True)
    kept = [r for r in every if not r.rejected]
    rejected = [r for r in every if r.rejected]
    assert len(kept) == 3 and len(rejected) == 9
    # spy on what the localiser and the classifier are trained on
    trained: dict[str, GeneratedPairs] = {}

    def spy(name, real_fn):
        def wrapped(*args, **kw):
            trained[name] = args[1] if name == "localizer" else args[0]
            return real_fn(*args, **kw)
        return wrapped

    # the benchmark trains through pipelines.train (the same code path as `anomalyforge train`)
    monkeypatch.setattr(train_mod, "train_localizer", spy("localizer", train_mod.train_localizer))
    monkeypatch.setattr(train_mod, "train_classifier", spy("classifier", train_mod.train_classifier))
    files = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    res = run_benchmark(bottle_dir, tmp_path / "b", [], profile="smoke", runs={"croppaste+filtered": run},
                        progress=False)
    entry = res["methods"]["croppaste+filtered"]
    assert entry["status"] == "done" and entry["n_pairs"] == len(kept)
    # exactly the kept pairs reached both models, none of the rejected ones
    want = _fingerprints(GeneratedPairs.from_records(run, kept, 64, progress=False))
    unwanted = {im for _, im, _ in _fingerprints(GeneratedPairs.from_records(run, rejected, 64, progress=False))}
    assert set(trained) == {"localizer", "classifier"}
    for name, pairs in trained.items():
        assert _fingerprints(pairs) == want, name
        assert not unwanted & {im for _, im, _ in _fingerprints(pairs)}, name
    # the given run is read only: its quality scores go to the benchmark's own folder
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == files
    quality = tmp_path / "b" / entry["artifacts"]["quality"]
    assert quality.is_file()
    assert entry["generation"]["n"] == len(kept)  # generation quality of the kept pairs only
    assert np.load(tmp_path / "b" / entry["artifacts"]["maps"])["maps"].shape == (61, 64, 64)


def test_labelled_run_must_be_a_run_folder(bottle_dir, tmp_path):
    with pytest.raises(DataError, match="not a generated run folder"):
        run_benchmark(bottle_dir, tmp_path / "b", [], profile="smoke",
                      runs={"mine": tmp_path}, progress=False)
