"""filter_run on a run folder of real bottle pairs: scores every record, keeps the well-aligned ones."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from qualitydata import SMALL_ARS, copy_cache, shifted

from anomalyforge.atomic import write_png_atomic
from anomalyforge.cli import main
from anomalyforge.data.io import read_image, read_mask
from anomalyforge.errors import ConfigError, DataError
from anomalyforge.formats.manifest import read_manifest, write_manifest
from anomalyforge.formats.run import RunInfo, record_training
from anomalyforge.quality.filter import filter_run, select


def _make_run(root: Path, split, data: Path, n: int = 3) -> Path:
    """A run folder like generate writes: n aligned real defects, n masks over unaltered good images,
    n real defects with the mask moved elsewhere; run.json names the good training images."""
    run = root / "run"
    recs = []
    defects = [s for t in sorted(split.test_defects) for s in split.test_defects[t]][::4][:n]
    kinds = []
    for i, s in enumerate(defects):
        img, m = read_image(s.image, 256), read_mask(s.mask, 256)
        kinds += [("aligned", img, m), ("unaltered", read_image(split.test_good[i].image, 256), m),
                  ("moved", img, shifted(m))]
    for j, (kind, img, m) in enumerate(kinds):
        pid = f"mixed_{j:04d}"
        write_png_atomic(run / "images" / "mixed" / f"{pid}.png", img)
        write_png_atomic(run / "masks" / "mixed" / f"{pid}.png", m)
        recs.append({"id": pid, "defect_type": "mixed", "method": kind, "image": f"images/mixed/{pid}.png",
                     "mask": f"masks/mixed/{pid}.png", "source": "", "seed": j, "params": {}, "scores": {},
                     "category": "bottle"})
    training = record_training(split.train_good, split.train_defects, data)
    RunInfo(method="test", size=256, category="bottle", data=str(data), training=training, complete=True).write(run)
    write_manifest(run, recs)
    return run


@pytest.fixture()
def run(tmp_path, bottle_split, bottle_dir, ars_cache) -> Path:
    r = _make_run(tmp_path, bottle_split, bottle_dir)
    copy_cache(ars_cache, r)  # same images/config/seed: filter_run reuses it instead of retraining
    return r


def test_filter_keeps_aligned_pairs_and_keeps_scores_of_rejected(run):
    before = (run / "ars" / "state.pt").stat().st_mtime_ns
    summary = filter_run(run, keep=3, config=SMALL_ARS, progress=False)
    assert (run / "ars" / "state.pt").stat().st_mtime_ns == before  # cached discriminator reused
    recs = read_manifest(run, include_rejected=True)
    assert len(recs) == 9 and all(isinstance(r["scores"]["ars"], float) for r in recs)
    kept = [r for r in recs if not r["rejected"]]
    assert len(kept) == 3 and summary["counts"]["mixed"] == {**summary["counts"]["mixed"], "kept": 3, "rejected": 6}
    assert sum(r["method"] == "aligned" for r in kept) >= 2, [(r["method"], r["scores"]["ars"]) for r in recs]
    mean = {k: np.mean([r["scores"]["ars"] for r in recs if r["method"] == k])
            for k in ("aligned", "unaltered", "moved")}
    assert mean["aligned"] > mean["unaltered"] and mean["aligned"] > mean["moved"], mean
    assert read_manifest(run) == kept  # the run machinery's reader skips rejected records
    assert json.loads((run / "ars" / "filter.json").read_text())["keep"] == 3


def test_cli_reuses_cached_discriminator(run, capsys):
    before = (run / "ars" / "state.pt").stat().st_mtime_ns
    assert main(["filter", str(run), "--keep", "4", "--no-progress"]) == 0
    assert "kept 4/9" in capsys.readouterr().out
    assert len(read_manifest(run)) == 4
    assert (run / "ars" / "state.pt").stat().st_mtime_ns == before


def test_select_ranks_unscored_last():
    recs = [{"id": "a", "defect_type": "t", "scores": {"ars": 0.1}},
            {"id": "b", "defect_type": "t", "scores": {"ars": None}},
            {"id": "c", "defect_type": "t", "scores": {"ars": 0.5}},
            {"id": "d", "defect_type": "u", "scores": {"ars": -1.0}}]
    select(recs, keep=1)
    assert [r["rejected"] for r in recs] == [True, True, False, False]
    select(recs, keep_ratio=0.5)  # ceil(3 * 0.5) = 2 of type t, ceil(0.5) = 1 of type u
    assert [r["rejected"] for r in recs] == [False, True, False, False]


def test_bad_inputs_are_clear_and_leave_manifest_untouched(run, tmp_path, capsys):
    manifest = (run / "manifest.jsonl").read_bytes()
    with pytest.raises(ConfigError, match="not both"):
        filter_run(run, keep=1, keep_ratio=0.5)
    with pytest.raises(ConfigError, match="keep-ratio"):
        filter_run(run, keep_ratio=1.5)
    (run / "images" / "mixed" / "mixed_0004.png").unlink()
    with pytest.raises(DataError, match="mixed_0004.png.*image file missing"):
        filter_run(run, keep=1, config=SMALL_ARS, progress=False)
    assert (run / "manifest.jsonl").read_bytes() == manifest
    assert main(["filter", str(tmp_path / "nope"), "--keep", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("anomalyforge: error: ") and "nope" in err and err.count("\n") == 1


def test_select_by_source_keeps_every_real_defect():
    """Per type, ranking all pairs together can drop every pair of a less salient real defect;
    stratify="source" shares the budget over the defects the pairs came from."""
    recs = [{"id": f"{d}{i}", "defect_type": "t", "params": {"defect": d}, "scores": {"ars": s + i}}
            for d, s in (("loud", 10.0), ("quiet", 0.0)) for i in range(4)]
    recs.append({"id": "x", "defect_type": "t", "params": {}, "scores": {"ars": 5.0}})  # no source: own group
    select(recs, keep=4, stratify="type")
    assert {r["id"] for r in recs if not r["rejected"]} == {"loud0", "loud1", "loud2", "loud3"}
    select(recs, keep=4)  # default: by source
    kept = {r["id"] for r in recs if not r["rejected"]}
    assert kept == {"loud3", "loud2", "quiet3", "quiet2"}, kept  # 4 * 4/9 -> 2 each, best within each
    select(recs, keep_ratio=1.0, stratify="source")
    assert not any(r["rejected"] for r in recs)
    with pytest.raises(ConfigError, match="stratify"):
        select(recs, keep=1, stratify="pixel")


def test_refilter_reuses_scores_and_cli_stratifies(run, capsys, monkeypatch):
    filter_run(run, keep=3, config=SMALL_ARS, progress=False)
    scored = {r["id"]: r["scores"]["ars"] for r in read_manifest(run, include_rejected=True)}

    def no_discriminator(*a, **k):
        raise AssertionError("a re-filter with the same discriminator must not load or train one")

    monkeypatch.setattr("anomalyforge.quality.filter.train_or_load", no_discriminator)
    summary = filter_run(run, keep=6, config=SMALL_ARS, progress=False)
    recs = read_manifest(run, include_rejected=True)
    assert {r["id"]: r["scores"]["ars"] for r in recs} == scored
    assert summary["stratify"] == "source" and summary["counts"]["mixed"]["kept"] == 6
    assert main(["filter", str(run), "--keep", "2", "--stratify", "type", "--no-progress"]) == 0
    assert "kept 2/9" in capsys.readouterr().out
    assert json.loads((run / "ars" / "filter.json").read_text())["stratify"] == "type"
