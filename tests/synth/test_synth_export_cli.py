"""Export to MVTec AD (read back by our own reader), contact sheets, and the CLI commands."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from anomalyforge.cli import main
from anomalyforge.data import load_dataset
from anomalyforge.data.io import read_image, read_mask
from anomalyforge.errors import ConfigError, DataError
from anomalyforge.formats.manifest import read_manifest, write_manifest
from anomalyforge.formats.run import RunInfo
from anomalyforge.report.preview import contact_sheet
from anomalyforge.synth.export import export_run
from anomalyforge.synth.run import generate_run

warnings.filterwarnings("ignore", category=UserWarning)


@pytest.fixture(scope="module")
def run(small_bottle, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("exp") / "run"
    generate_run(small_bottle, out, method="cutpaste", n=2, size=64, progress=False)
    return out


def test_export_mvtec_layout_reads_back(run, tmp_path):
    recs = read_manifest(run)
    recs[0]["rejected"] = True
    write_manifest(run, recs)
    try:
        dest = export_run(run, tmp_path / "exp", shared_backgrounds=True)  # every pair: layout and counts
    finally:
        recs[0].pop("rejected")
        write_manifest(run, recs)
    assert dest == tmp_path / "exp" / "bottle"
    ds = load_dataset(dest)
    assert ds.format == "mvtec" and ds.defect_types == ["broken_large", "broken_small", "contamination"]
    assert len(ds.select(label="defect")) == 5  # the rejected pair is left out
    goods = ds.select(label="good", split="train")
    test_goods = ds.select(label="good", split="test")
    assert len(goods) == 7 and len(test_goods) == 1  # 10 % (at least one) held out for test/good
    assert read_image(goods[0].image).shape == (64, 64, 3)
    import json

    index = json.loads((dest / "anomalyforge_export.json").read_text())
    assert not set(index["train_good"].values()) & set(index["test_good"].values())
    assert len(set(index["train_good"].values()) | set(index["test_good"].values())) == 8
    all_train = export_run(run, tmp_path / "exp3", test_good=0.0, shared_backgrounds=True)
    assert not (all_train / "test" / "good").exists() and len(list((all_train / "train/good").iterdir())) == 8
    again = json.loads((export_run(run, tmp_path / "exp4") / "anomalyforge_export.json").read_text())
    assert again["test_good"] == index["test_good"]  # the run's seed fixes the split
    twice = json.loads((export_run(run, tmp_path / "exp6") / "anomalyforge_export.json").read_text())
    assert twice["train_good"] == again["train_good"] and twice["test"] == again["test"]
    with pytest.raises(ConfigError, match="test_good"):
        export_run(run, tmp_path / "exp5", test_good=1.0)
    assert not (tmp_path / "exp5").exists()
    for s in ds.select(label="defect"):
        assert read_mask(s.mask).any()
    with pytest.raises(ConfigError, match="already exists"):
        export_run(run, tmp_path / "exp")
    with pytest.raises(ConfigError, match="train_share"):
        export_run(run, tmp_path / "exp7", train_share=1.0)
    with pytest.raises(ConfigError, match="unknown export format"):
        export_run(run, tmp_path / "exp2", format="coco")
    assert not (tmp_path / "exp2").exists()


def test_export_train_good_holds_no_background_of_a_test_defect(run, tmp_path):
    """Issue 14.6: a defect drawn on a good image that is also in train/good leaks into training."""
    import json

    recs = {r["id"]: r for r in read_manifest(run)}
    info = RunInfo.read(run)  # manifest sources are relative to the run's data root
    dest = export_run(run, tmp_path / "exp")
    index = json.loads((dest / "anomalyforge_export.json").read_text())
    exported = [recs[i] for i in index["test"].values()]
    backgrounds = {str(info.resolve(r["source"]).resolve()) for r in exported}
    train = {str(Path(p).resolve()) for p in index["train_good"].values()}
    assert exported and train and len(backgrounds) > 1
    assert not train & backgrounds  # the split this test exists for
    assert len(list((dest / "train" / "good").iterdir())) == len(train)
    split = index["split"]
    assert split["backgrounds"] == "held_out" and split["pairs"] == len(recs)
    assert split["pairs_exported"] == len(exported) and split["pairs_exported"] + split["pairs_left_out"] == len(recs)
    assert sorted(split["left_out_ids"]) == sorted(set(recs) - set(index["test"].values()))
    readme = (dest / "README.txt").read_text()
    assert "held-out backgrounds" in readme and f"{len(exported)} exported of {len(recs)}" in readme
    # the goods that are neither trained on nor tested on are only backgrounds: no good is lost silently
    goods = set(index["train_good"].values()) | set(index["test_good"].values()) | set(split["background_only_goods"])
    assert len(goods) == 8
    leaky = export_run(run, tmp_path / "leaky", shared_backgrounds=True)
    leaky_index = json.loads((leaky / "anomalyforge_export.json").read_text())
    assert leaky_index["split"]["backgrounds"] == "shared" and len(leaky_index["test"]) == len(recs)
    assert {str(Path(p).resolve()) for p in leaky_index["train_good"].values()} & backgrounds


def test_contact_sheet_shows_sources_results_and_red_masks(run, tmp_path):
    out = contact_sheet(run, tmp_path / "sheet.png", per_type=2)
    sheet = read_image(out)
    assert sheet.shape[0] > 3 * 3 * 100 and sheet.shape[1] >= 2 * 160
    red = (sheet[..., 0] > 200) & (sheet[..., 1] < 60) & (sheet[..., 2] < 60)
    assert red.sum() > 20  # mask contours drawn
    with pytest.raises(DataError, match="not a generation run"):
        contact_sheet(tmp_path, tmp_path / "x.png")


def test_cli_generate_preview_export(small_bottle, tmp_path, capsys):
    out = tmp_path / "cli_run"
    rc = main(["generate", "--data", str(small_bottle), "--method", "perlin", "--n", "2", "--out", str(out),
               "--types", "broken_large,contamination", "--size", "64", "--seed", "3", "--no-progress",
               "--param", "beta=[0.0,0.5]"])
    text = capsys.readouterr().out
    assert rc == 0 and "broken_large" in text and "pairs/s" in text
    assert len(read_manifest(out)) == 4
    assert main(["preview", str(out), "--out", str(tmp_path / "p.png"), "--per-type", "2"]) == 0
    assert (tmp_path / "p.png").is_file()
    assert main(["export", str(out), "--format", "mvtec", str(tmp_path / "ex")]) == 0
    assert (tmp_path / "ex" / "bottle" / "ground_truth" / "contamination" / "001_mask.png").is_file()


@pytest.mark.parametrize("argv, match", [
    (["--method", "cutpaste", "--fit-steps", "5"], "model-free"),
    (["--n", "-1"], "n must be a positive"),
    (["--types", "dent"], "unknown defect type"),
    (["--param", "nokey"], "expected key=value"),
])
def test_cli_errors_are_one_line_exit_2(small_bottle, tmp_path, capsys, argv, match):
    out = tmp_path / "o"
    rc = main(["generate", "--data", str(small_bottle), "--out", str(out), "--size", "64", "--no-progress", *argv])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("anomalyforge: error:") and match in err and "\n" not in err
    assert not out.exists()


def test_cli_missing_data_folder(tmp_path, capsys):
    rc = main(["generate", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "nope" in err and not (tmp_path / "o").exists()


def test_split_goods_leaves_out_the_defects_painted_on_a_training_good(tmp_path):
    """Every good is some defect's background here, so train/good must take backgrounds: the
    defects painted on them are left out of the export (never a background in train and test)."""
    from anomalyforge.synth.export import split_goods

    goods = [str(tmp_path / f"{i:03d}.png") for i in range(10)]
    backgrounds = goods[1:] + goods[1:3]  # 11 defects: on every good but 000, two on 001 and 002
    recs = [f"pair{i}" for i in range(len(backgrounds))]
    s = split_goods(goods, recs, backgrounds, seed=0)  # type: ignore[arg-type]  # any record objects
    assert len(s["test"]) == 1 and len(s["train"]) >= 5 and not set(s["train"]) & set(s["test"])
    assert sorted(s["train"] + s["test"] + s["background_only"]) == goods
    by_rec = dict(zip(recs, backgrounds, strict=True))
    assert s["kept"] and s["left_out"] and sorted(s["kept"] + s["left_out"]) == sorted(recs)
    assert not {by_rec[r] for r in s["kept"]} & set(s["train"])  # the rule this split exists for
    assert {by_rec[r] for r in s["left_out"]} <= set(s["train"])  # and nothing else is left out
