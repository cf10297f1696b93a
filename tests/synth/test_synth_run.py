"""generate_run end to end on real bottle images: layout, determinism, resume, extension, errors."""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from synthdata import make_small_mvtec

import anomalyforge.synth.run as run_mod
from anomalyforge.atomic import write_png_atomic
from anomalyforge.data.io import read_image, read_mask
from anomalyforge.errors import ConfigError, DataError
from anomalyforge.formats.manifest import read_manifest, write_manifest
from anomalyforge.seeds import pair_seed
from anomalyforge.synth.run import generate_run

warnings.filterwarnings("ignore", category=UserWarning)
KW = dict(n=3, size=64, progress=False)
TYPES = ["broken_large", "broken_small", "contamination"]


def _files(run: Path) -> dict[str, bytes]:
    out = {}
    for p in sorted(run.rglob("*")):
        rel = p.relative_to(run).as_posix()
        if p.is_file() and rel.split("/")[0] in ("images", "masks") or rel in ("manifest.jsonl", "run.json"):
            out[rel] = p.read_bytes()
    return out


@pytest.fixture(scope="module")
def clean_run(small_bottle, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "clean"
    s = generate_run(small_bottle, out, seed=5, **KW)
    assert s["pairs"] == {t: 3 for t in TYPES} and s["new"] == 9 and s["pairs_per_s"] > 0
    return out


def test_layout_manifest_and_config(clean_run, small_bottle):
    cfg = json.loads((clean_run / "run.json").read_text())
    assert cfg["method"] == "croppaste" and cfg["category"] == "bottle" and cfg["seed"] == 5
    assert cfg["types"] == TYPES and cfg["size"] == 64 and cfg["n"] == 3 and "scale" in cfg["config"]
    recs = read_manifest(clean_run)
    assert len(recs) == 9 and len({r["id"] for r in recs}) == 9
    for r in recs:
        assert set(r) >= {"id", "defect_type", "method", "image", "mask", "source", "seed", "params",
                          "scores", "category"}
        assert r["image"] == f"images/{r['defect_type']}/{r['id']}.png" and r["scores"] == {}
        img, mask = read_image(clean_run / r["image"]), read_mask(clean_run / r["mask"])
        assert img.shape == (64, 64, 3) and mask.any()
        assert np.array_equal(np.unique(np.asarray(Image.open(clean_run / r["mask"]))), [0, 255])
        src = small_bottle / r["source"]  # stored relative to the run's data root
        assert not Path(r["source"]).is_absolute() and src.is_file() and src.parent.name == "good"
        assert r["seed"] == pair_seed(5, r["defect_type"], int(r["id"].rsplit("_", 1)[1]))
    assert (clean_run / "state" / "FIT_DONE").is_file()


def test_same_seed_same_bytes_and_other_seed_differs(clean_run, small_bottle, tmp_path):
    generate_run(small_bottle, tmp_path / "again", seed=5, **KW)
    assert _files(tmp_path / "again") == _files(clean_run)
    generate_run(small_bottle, tmp_path / "other", seed=6, **KW)
    a, b = _files(tmp_path / "other"), _files(clean_run)
    assert a.keys() == b.keys() and a["images/broken_large/broken_large_000000.png"] != b[
        "images/broken_large/broken_large_000000.png"]


def test_interrupted_run_resumes_to_identical_bytes(clean_run, small_bottle, tmp_path, monkeypatch):
    out = tmp_path / "resumed"
    calls = {"n": 0}
    real = run_mod.write_png_atomic

    def flaky(path, arr):
        calls["n"] += 1
        if calls["n"] > 7:
            raise KeyboardInterrupt
        real(path, arr)

    monkeypatch.setattr(run_mod, "write_png_atomic", flaky)
    with pytest.raises(KeyboardInterrupt):
        generate_run(small_bottle, out, seed=5, **KW)
    monkeypatch.setattr(run_mod, "write_png_atomic", real)
    partial = read_manifest(out)
    assert 0 < len(partial) < 9
    with open(out / "manifest.jsonl", "ab") as fh:  # a torn last line, as a crash would leave
        fh.write(b'{"id": "broken_')
    assert len(read_manifest(out)) == len(partial)
    s = generate_run(small_bottle, out, seed=5, **KW)
    assert s["new"] == 9 - len(partial)
    assert _files(out) == _files(clean_run)


def test_extend_and_refuse_a_different_run(clean_run, small_bottle, tmp_path):
    out = tmp_path / "ext"
    shutil.copytree(clean_run, out)
    before = _files(out)
    s = generate_run(small_bottle, out, seed=5, **{**KW, "n": 4})
    assert s["new"] == 3 and s["pairs"] == {t: 4 for t in TYPES}
    after = _files(out)
    assert all(after[k] == v for k, v in before.items() if k.startswith(("images", "masks")))
    assert json.loads((out / "run.json").read_text())["n"] == 4
    snapshot = _files(out)
    for change in ({"seed": 6}, {"method": "cutpaste"}, {"size": 96}, {"types": ["broken_large"]},
                   {"params": {"rotation": 10.0}}):
        with pytest.raises(ConfigError, match="different run"):
            generate_run(small_bottle, out, **{**KW, "seed": 5, **change})
    assert _files(out) == snapshot


def test_manifest_helpers_skip_rejected(clean_run, tmp_path):
    out = tmp_path / "rej"
    shutil.copytree(clean_run, out)
    recs = read_manifest(out)
    recs[0]["rejected"] = True
    recs[1]["scores"] = {"realism": 0.5}
    write_manifest(out, recs)
    assert len(read_manifest(out)) == 8
    assert len(read_manifest(out, include_rejected=True)) == 9
    assert read_manifest(out)[0]["scores"] == {"realism": 0.5}


@pytest.mark.parametrize("kwargs, err, match", [
    ({"n": 0}, ConfigError, "n must be a positive"),
    ({"method": "nope"}, ConfigError, "unknown method 'nope'"),
    ({"types": ["scratch"]}, ConfigError, "unknown defect type"),
    ({"params": {"sampler_steps": 5}}, ConfigError, "model-free"),
    ({"seed": -1}, ConfigError, "seed"),
])
def test_bad_options_write_nothing(small_bottle, tmp_path, kwargs, err, match):
    out = tmp_path / "bad"
    with pytest.raises(err, match=match):
        generate_run(small_bottle, out, **{**KW, **kwargs})
    assert not out.exists()


def _bad_dataset(bottle_dir: Path, root: Path, how: str) -> Path:
    d = make_small_mvtec(bottle_dir, root / "bottle", n_good=4, n_defect=1, types=("broken_small",))
    gt = d / "ground_truth" / "broken_small"
    for m in gt.glob("*.png"):
        m.unlink()
        if how == "empty":
            write_png_atomic(m, np.zeros((512, 512), np.uint8))
        elif how == "huge":
            write_png_atomic(m, np.full((512, 512), 255, np.uint8))
    if how == "none":
        gt.rmdir()
    return d


@pytest.mark.parametrize("how, match", [
    ("none", "no defect image with a non-empty mask"),
    ("empty", "no defect image with a non-empty mask"),
    ("huge", "000_mask.png: defect covers 100% of the image"),
])
def test_bad_data_is_a_clear_error_and_writes_nothing(bottle_dir, tmp_path, how, match):
    d = _bad_dataset(bottle_dir, tmp_path / "data", how)
    out = tmp_path / "out"
    with pytest.raises(DataError, match=match):
        generate_run(d, out, **KW)
    assert not out.exists()


def test_non_run_folder_is_refused(small_bottle, tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty"):
        generate_run(small_bottle, tmp_path / "busy", **KW)
    assert os.listdir(tmp_path / "busy") == ["notes.txt"]


def test_subtypes_share_the_pairs_of_their_defect_type():
    """Sub-types <type>@<k> split n in proportion to their few-shot examples; totals stay n."""
    from types import SimpleNamespace

    from anomalyforge.synth.run import pairs_per_type

    fd = SimpleNamespace(defects={"a@0": [1, 2, 3], "a@1": [4], "b": [5, 6]})
    counts = pairs_per_type(["a@0", "a@1", "b"], 10, fd)
    assert counts["b"] == 10
    assert counts["a@0"] + counts["a@1"] == 10
    assert counts["a@0"] > counts["a@1"] >= 1


def test_keep_ratio_generates_more_and_keeps_the_best_by_ars(small_bottle, tmp_path):
    """`keep_ratio` (gaa's default 0.5): n / ratio pairs per type, every one ARS-scored, the best n
    kept; the rejected stay in the manifest. 0 turns filtering off."""
    from anomalyforge.quality.ars import ARSConfig
    from anomalyforge.quality.filter import source_defect
    from anomalyforge.synth.base import get_generator

    assert get_generator("gaa").keep_ratio == 0.5 and get_generator("croppaste").keep_ratio is None
    small = ARSConfig(size=64, steps=20, hidden=64, batch_features=256, max_images=8)
    s = generate_run(small_bottle, tmp_path / "r", seed=1, keep_ratio=0.5, filter_config=small, **KW)
    assert s["pairs"] == {t: 6 for t in TYPES} and s["kept"] == {t: 3 for t in TYPES}
    recs = read_manifest(tmp_path / "r", include_rejected=True)
    assert len(recs) == 18 and all(isinstance(r["scores"]["ars"], float) for r in recs)
    cfg = json.loads((tmp_path / "r" / "run.json").read_text())
    assert cfg["n"] == 6 and cfg["keep_ratio"] == 0.5
    for t in TYPES:
        kept = [r["scores"]["ars"] for r in recs if r["defect_type"] == t and not r["rejected"]]
        dropped = [r["scores"]["ars"] for r in recs if r["defect_type"] == t and r["rejected"]]
        assert len(kept) == 3 and len(dropped) == 3
        # "the best": croppaste records its source defect, and within each source the kept pairs
        # out-score the dropped ones (select's default stratify="source")
        by_src: dict[str, tuple[list, list]] = {}
        for r in recs:
            if r["defect_type"] == t:
                by_src.setdefault(source_defect(r), ([], []))[bool(r["rejected"])].append(r["scores"]["ars"])
        for k_scores, d_scores in by_src.values():
            if k_scores and d_scores:
                assert min(k_scores) >= max(d_scores)
        assert any(k and d for k, d in by_src.values())
    assert len(read_manifest(tmp_path / "r")) == 9  # later steps see the kept pairs only
    # resuming the finished, filtered run adds nothing: the rejected pairs count as done
    again = generate_run(small_bottle, tmp_path / "r", seed=1, keep_ratio=0.5, filter_config=small, **KW)
    assert again["new"] == 0 and again["pairs"] == s["pairs"] and again["kept"] == s["kept"]
    assert len(read_manifest(tmp_path / "r", include_rejected=True)) == 18
    again_ids = sorted(r["id"] for r in read_manifest(tmp_path / "r", include_rejected=True))
    assert again_ids == sorted(r["id"] for r in recs)
    off = generate_run(small_bottle, tmp_path / "off", seed=1, keep_ratio=0, **KW)
    assert off["pairs"] == off["kept"] == {t: 3 for t in TYPES}
    with pytest.raises(ConfigError, match="keep_ratio"):
        generate_run(small_bottle, tmp_path / "bad", keep_ratio=1.5, **KW)
    assert not (tmp_path / "bad").exists()


def test_a_generator_fitted_in_pieces_resumes_at_the_piece(small_bottle, tmp_path, monkeypatch):
    """A generator made of pieces (`fit_parts`, one per defect type: DualAnoDiff's LoRAs) fits them
    one by one into state-parts/; a run stopped while fitting keeps the finished pieces and the
    next run fits only the rest, then joins them into state/ and draws the same pairs."""
    import anomalyforge.synth.base as base_mod
    from anomalyforge.synth.croppaste import CropPaste

    fitted: list[str] = []

    class Pieces(CropPaste):
        name = "croppaste-pieces"

        def fit_parts(self, data):
            return list(data.defect_types)

        def fit_part(self, data, part, part_dir):
            if part == "contamination" and not fitted.count("stop"):
                fitted.append("stop")
                raise KeyboardInterrupt  # stopped while fitting the last piece
            fitted.append(part)
            (part_dir / "piece.txt").write_text(part)

        def join_parts(self, data, part_dirs, state_dir):
            assert [(d / "piece.txt").read_text() for d in part_dirs.values()] == TYPES
            self.fit(data, state_dir)

    monkeypatch.setitem(base_mod._REGISTRY, Pieces.name, Pieces)
    out = tmp_path / "run"
    run_mod.fit_run(small_bottle, out, method=Pieces.name, seed=5, fit=False, **KW)  # run.json: a resumable run
    with pytest.raises(KeyboardInterrupt):
        generate_run(small_bottle, out, method=Pieces.name, seed=5, **KW)
    assert sorted(p.name for p in (out / "state-parts").iterdir()) == ["0", "1"] and not (out / "state").exists()
    generate_run(small_bottle, out, method=Pieces.name, seed=5, **KW)
    assert fitted == ["broken_large", "broken_small", "stop", "contamination"]  # nothing fitted twice
    assert not (out / "state-parts").exists() and (out / "state" / "FIT_DONE").is_file()
    plain = generate_run(small_bottle, tmp_path / "plain", seed=5, **KW)
    assert plain["new"] == 9
    assert {k: v for k, v in _files(out).items() if k.startswith(("images", "masks"))} == \
        {k: v for k, v in _files(tmp_path / "plain").items() if k.startswith(("images", "masks"))}
    with pytest.raises(ConfigError, match="no fit part 'nope'"):
        run_mod.fit_run(small_bottle, out, method=Pieces.name, seed=5, part="nope", **KW)
