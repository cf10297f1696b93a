"""The benchmark over several seeds: the spread and paired differences, on hand-made results and on
a real smoke benchmark of MVTec AD bottle."""

from __future__ import annotations

import json

import numpy as np
import pytest

from anomalyforge.errors import ConfigError
from anomalyforge.pipelines.seeds import format_seeds_table, run_benchmark_seeds, summarize_seeds


def _entry(px_ap: float, acc: float | None, model: str = "feature_head") -> dict:
    return {"status": "done", "model": model,
            "localization": {"pixel": {"auroc": 0.9, "ap": px_ap, "f1_max": 0.5, "aupro": 0.8},
                             "image": {"auroc": 1.0, "ap": 1.0, "f1_max": 1.0}},
            "classification": None if acc is None else {"accuracy": acc}, "generation": None}


def _doc(seed: int, cp_ap: float, pc_ap: float, cp_acc: float, pc_acc: float) -> dict:
    return {"category": "bottle", "profile": "cpu", "seed": seed, "config": {}, "split": {},
            "methods": {"croppaste": _entry(cp_ap, cp_acc), "patchcore": _entry(pc_ap, pc_acc, "patchcore")}}


def test_summary_gives_spread_and_paired_differences():
    docs = {0: _doc(0, 0.90, 0.80, 0.70, 0.75), 1: _doc(1, 0.94, 0.79, 0.80, 0.70), 2: _doc(2, 0.92, 0.81, 0.75, 0.75)}
    s = summarize_seeds(docs)
    ap = s["figures"]["croppaste"]["pixel_ap"]
    assert ap["values"] == [0.90, 0.94, 0.92] and ap["n"] == 3
    assert ap["mean"] == pytest.approx(0.92) and ap["sd"] == pytest.approx(np.std([0.9, 0.94, 0.92], ddof=1))
    assert (ap["min"], ap["max"]) == (0.90, 0.94)
    assert s["baseline"] == "patchcore" and s["figures"]["croppaste"]["is"] is None
    d = s["paired"]["croppaste"]["pixel_ap"]
    assert d["values"] == pytest.approx([0.10, 0.15, 0.11]) and d["ahead"] == 3
    acc = s["paired"]["croppaste"]["accuracy"]
    assert acc["values"] == pytest.approx([-0.05, 0.10, 0.0]) and acc["ahead"] == 1  # a tie is not ahead
    assert acc["min"] == pytest.approx(-0.05) and acc["max"] == pytest.approx(0.10)
    table = format_seeds_table(s)
    assert "92.0±2.0" in table and "croppaste - patchcore" in table and "ahead 3/3" in table


def test_summary_refuses_unfinished_seeds():
    docs = {0: _doc(0, 0.9, 0.8, 0.7, 0.7), 1: _doc(1, 0.9, 0.8, 0.7, 0.7)}
    docs[1]["methods"]["croppaste"]["status"] = "running"
    with pytest.raises(ConfigError, match="seed 1: method 'croppaste' has no finished result"):
        summarize_seeds(docs)


@pytest.fixture(scope="module")
def over_seeds(bottle_dir, tmp_path_factory):
    from afthreads import pinned

    out = tmp_path_factory.mktemp("seeds") / "b"
    with pinned():  # module-scoped: runs before the function-scoped thread pin (113 s unpinned at 2 threads)
        summary = run_benchmark_seeds(bottle_dir, out, ["croppaste", "patchcore"], [0, 1], profile="smoke", n=4,
                                      progress=False)
    return out, summary


def test_each_seed_is_its_own_benchmark_and_the_summary_reads_them(over_seeds):
    out, summary = over_seeds
    docs = {s: json.loads((out / f"seed-{s}" / "results.json").read_text()) for s in (0, 1)}
    assert [docs[s]["seed"] for s in (0, 1)] == [0, 1]
    for s, i in ((0, 0), (1, 1)):
        px = docs[s]["methods"]["croppaste"]["localization"]["pixel"]
        assert summary["figures"]["croppaste"]["pixel_ap"]["values"][i] == px["ap"]
    # the seed reaches generation: the two croppaste runs hold different pairs
    m0 = (out / "seed-0" / "runs" / "croppaste" / "manifest.jsonl").read_text()
    m1 = (out / "seed-1" / "runs" / "croppaste" / "manifest.jsonl").read_text()
    assert m0 != m1
    assert json.loads((out / "summary.json").read_text())["seeds"] == [0, 1]
    html = (out / "summary.html").read_text()
    assert "Paired differences to patchcore" in html and 'href="seed-1/report.html"' in html
    assert (out / "summary.png").stat().st_size > 1000


def test_cli_seeds_resumes_and_bad_seed_lists_exit_2(over_seeds, bottle_dir, tmp_path, capsys):
    from anomalyforge.cli import main

    out, summary = over_seeds
    before = (out / "seed-0" / "results.json").read_text()
    rc = main(["benchmark", "--data", str(bottle_dir), "--methods", "croppaste,patchcore", "--profile", "smoke",
               "--n", "4", "--seeds", "0,1", "--out", str(out), "--no-progress"])
    assert rc == 0 and (out / "seed-0" / "results.json").read_text() == before  # finished seeds are skipped
    assert "seeds 0,1 (mean ± sd)" in capsys.readouterr().out
    for seeds, msg in (("3", "at least two seeds"), ("1,1", "seeds repeat"), ("0,x", "comma-separated integers")):
        rc = main(["benchmark", "--data", str(bottle_dir), "--methods", "patchcore", "--profile", "smoke",
                   "--seeds", seeds, "--out", str(tmp_path / "x"), "--no-progress"])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and msg in err and len(err.splitlines()) == 1
    rc = main(["benchmark", "--data", str(bottle_dir), "--methods", "patchcore", "--profile", "smoke",
               "--seeds", "0,1", "--seed", "3", "--out", str(tmp_path / "x"), "--no-progress"])
    assert rc == 2 and "not both" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
