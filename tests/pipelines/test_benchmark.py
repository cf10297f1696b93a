"""End-to-end benchmark on real MVTec AD bottle with the `smoke` profile (64 px, few steps)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from anomalyforge.cli import main
from anomalyforge.errors import ConfigError, DataError
from anomalyforge.formats.results import SCHEMA_VERSION, BenchmarkResults, MethodResult
from anomalyforge.metrics import auroc, average_precision
from anomalyforge.pipelines.benchmark import format_results_table, run_benchmark
from anomalyforge.report.figures import good_scale

TYPES = ["broken_large", "broken_small", "contamination"]


@pytest.fixture(scope="module")
def bench(bottle_dir, tmp_path_factory):
    from afthreads import pinned

    out = tmp_path_factory.mktemp("bench")
    with pinned():  # module-scoped: runs before the function-scoped thread pin
        res = run_benchmark(bottle_dir, out, ["croppaste", "patchcore"], profile="smoke", n=4, progress=False)
    return out, res


def test_results_follow_the_schema(bench):
    out, res = bench
    doc = json.loads((out / "results.json").read_text())
    assert doc == json.loads(json.dumps(res))
    assert set(doc) == {"schema_version", "category", "data", "profile", "seed", "config", "backbone", "split",
                        "created", "version", "methods"}
    assert doc["backbone"]["name"] == "efficientnet-lite0" and doc["backbone"]["weights"] == "imagenet"
    assert (doc["category"], doc["profile"], doc["seed"]) == ("bottle", "smoke", 0)
    assert doc["config"]["size"] == 64
    assert doc["split"] == {"train_defects": {"broken_large": 7, "broken_small": 8, "contamination": 7},
                            "test_defects": {"broken_large": 13, "broken_small": 14, "contamination": 14},
                            "train_good": 209, "test_good": 20}
    assert list(doc["methods"]) == ["croppaste", "patchcore"]
    for name, e in doc["methods"].items():
        assert set(e) == {"status", "kind", "model", "localization", "classification", "generation",
                          "timings", "peak_rss_mb", "n_pairs", "run", "artifacts", "display_scale", "decisions"}
        # verdicts at thresholds chosen on training data: the synthetic (delivered) model only
        assert (e["decisions"] is None) == (name == "patchcore")
        assert e["status"] == "done"
        # the report's heat scale: the model's pixel scores on 21 (10 %) good TRAINING images no model
        # trained on (0 = their median, 1 = their 99.9th percentile), never on test images
        sc = e["display_scale"]
        assert sc["n_images"] == 21 and sc["pixels"] == 21 * 64 * 64 and sc["lo"] < sc["hi"]
        loc = e["localization"]
        assert set(loc["pixel"]) == {"auroc", "ap", "f1_max", "aupro"}
        assert set(loc["image"]) == {"auroc", "ap", "f1_max"}
        assert sorted(loc["per_type"]) == TYPES
        for v in [*loc["pixel"].values(), *loc["image"].values()]:
            assert 0.0 <= v <= 1.0
        parts = {"train_parts_s"} if name != "patchcore" else set()  # a synthetic method's training stages
        assert set(e["timings"]) == {"generate_s", "quality_s", "train_s", "eval_s", "total_s"} | parts
        quality = {"quality": f"methods/{name}/quality.json"} if e["generation"] is not None else {}
        assert e["artifacts"] == {"maps": f"methods/{name}/maps.npz", **quality}
    syn, base = doc["methods"]["croppaste"], doc["methods"]["patchcore"]
    assert (syn["kind"], syn["model"], syn["n_pairs"], syn["run"]) == \
        ("synthetic", "feature_head", 12, "runs/croppaste")
    assert (base["kind"], base["model"], base["generation"]) == ("baseline", "patchcore", None)
    # the no-synthesis classifier: trained on the 22 real few-shot defects, tested on the same 41
    assert base["classification"]["trained_on"] == "real few-shot defects"
    assert np.array(base["classification"]["confusion"]).sum(1).tolist() == [13, 14, 14]
    assert syn["classification"]["trained_on"] == "generated pairs + real few-shot defects (real share 0.5)"
    z = np.load(out / "methods/patchcore/maps.npz")
    assert z["cls_pred"].shape == (41,) and z["cls_true"].tolist() == z["types"][:41].tolist()
    # PatchCore's scale goods are unseen good images like the test goods, so its top of scale is
    # theirs (15.8 vs 15.9 measured); goods from its memory bank would score far lower (12.6)
    test_goods = good_scale(z["maps"][z["labels"] == 0].astype(np.float32))
    assert base["display_scale"]["hi"] == pytest.approx(test_goods["hi"], rel=0.1)
    # generation quality of the 12 kept pairs, 4 per type, against each type's few-shot defects
    gen = syn["generation"]
    assert gen["n"] == 12 and sorted(gen["types"]) == TYPES
    assert 1.0 <= gen["is"] <= 12 and gen["ic_lpips"] > 0
    assert all(g["n"] == 4 for g in gen["types"].values())
    # the full quality document sits in the benchmark's own folder, not in the run
    assert json.loads((out / syn["artifacts"]["quality"]).read_text())["all"]["is"] == gen["is"]
    assert not (out / "runs/croppaste/quality.json").exists()
    cls = syn["classification"]
    assert cls["labels"] == TYPES and sorted(cls["per_type"]) == TYPES
    conf = np.array(cls["confusion"])
    assert conf.shape == (3, 3) and conf.sum(1).tolist() == [13, 14, 14]
    assert cls["accuracy"] == pytest.approx(np.trace(conf) / conf.sum())
    # PatchCore needs no training on defects and already separates them at 64 px
    assert base["localization"]["pixel"]["auroc"] > 0.85
    # the typed reader accepts the file and reads back exactly what was written
    typed = BenchmarkResults.read(out)
    assert typed.schema_version == SCHEMA_VERSION and typed.to_dict() == doc
    assert (typed.category, typed.seed, list(typed.methods)) == ("bottle", 0, ["croppaste", "patchcore"])
    assert all(isinstance(m, MethodResult) and not m.extra for m in typed.methods.values())


@pytest.mark.parametrize("method", ["croppaste", "patchcore"])
def test_reported_figures_are_those_of_the_saved_maps(bench, method):
    """Every reported figure is recomputed from the saved maps.npz: the metrics were computed on
    these maps and masks (not transposed, not another method's, not a subset of the test split)."""
    out, _ = bench
    e = BenchmarkResults.read(out).methods[method]
    z = np.load(out / e.artifacts["maps"])
    maps, masks, labels, types = z["maps"].astype(np.float32), z["masks"] > 0, z["labels"], z["types"]
    px, im = e.localization["pixel"], e.localization["image"]
    # the saved maps are float16 copies of the float32 maps the figures came from: a rounding margin
    assert auroc(maps, masks) == pytest.approx(px["auroc"], abs=2e-3)
    assert average_precision(maps, masks) == pytest.approx(px["ap"], abs=5e-3)
    assert auroc(z["image_scores"], labels) == pytest.approx(im["auroc"], abs=1e-9)  # saved as float64
    if method == "patchcore":
        # its image score is the maximum of its map; and its maps (pixel AUROC > 0.85) are saved in
        # image coordinates: transposed they rank the defect pixels clearly worse
        np.testing.assert_allclose(z["image_scores"], maps.reshape(len(maps), -1).max(1), rtol=2e-3)
        assert auroc(maps.transpose(0, 2, 1), masks) < px["auroc"] - 0.02
    for t, v in e.localization["per_type"].items():
        sel = (labels == 0) | (types == t)
        assert auroc(maps[sel], masks[sel]) == pytest.approx(v["pixel_auroc"], abs=2e-3), t
        assert auroc(z["image_scores"][sel], labels[sel]) == pytest.approx(v["image_auroc"], abs=1e-9), t
    cls = e.classification
    pred, true = z["cls_pred"].tolist(), z["cls_true"].tolist()
    conf = np.zeros((3, 3), int)
    for p, t in zip(pred, true, strict=True):
        conf[cls["labels"].index(t), cls["labels"].index(p)] += 1
    assert conf.tolist() == cls["confusion"]
    assert cls["accuracy"] == pytest.approx(np.mean([p == t for p, t in zip(pred, true, strict=True)]))


def test_maps_artifact_matches_the_test_split(bench):
    out, res = bench
    z = np.load(out / "methods/croppaste/maps.npz")
    n = 41 + 20
    assert z["maps"].shape == (n, 64, 64) and z["maps"].dtype == np.float16
    assert z["masks"].shape == (n, 64, 64) and z["masks"].dtype == np.uint8
    assert z["labels"].tolist() == [1] * 41 + [0] * 20
    assert sorted(set(z["types"][:41].tolist())) == TYPES
    assert all("/test/" in p for p in z["paths"].tolist())  # never a training image
    assert z["image_scores"].shape == (n,)
    assert z["cls_pred"].shape == z["cls_true"].shape == (41,)
    pc = np.load(out / "methods/patchcore/maps.npz")
    assert np.array_equal(pc["masks"], z["masks"]) and np.array_equal(pc["cls_true"], z["cls_true"])


def test_resume_skips_finished_methods_and_cli_prints_the_table(bench, bottle_dir, capsys):
    out, res = bench
    stamp = (out / "methods/croppaste/maps.npz").stat().st_mtime_ns
    code = main(["benchmark", "--data", str(bottle_dir), "--methods", "croppaste,patchcore",
                 "--profile", "smoke", "--n", "4", "--out", str(out), "--no-progress"])
    assert code == 0
    assert (out / "methods/croppaste/maps.npz").stat().st_mtime_ns == stamp  # skipped, not redone
    assert json.loads((out / "results.json").read_text())["methods"] == json.loads(json.dumps(res["methods"]))
    text = capsys.readouterr().out
    assert text.strip() == format_results_table(res).strip()
    assert "croppaste" in text and "patchcore" in text


def test_no_quality_skips_generation_scores(bench, bottle_dir, tmp_path, capsys):
    out, _ = bench
    code = main(["benchmark", "--data", str(bottle_dir), "--methods", "croppaste", "--profile", "smoke",
                 "--run", f"croppaste={out / 'runs/croppaste'}", "--out", str(tmp_path / "nq"), "--no-quality",
                 "--no-progress"])
    assert code == 0
    doc = json.loads((tmp_path / "nq/results.json").read_text())
    assert doc["config"]["quality"] is False and doc["methods"]["croppaste"]["generation"] is None
    assert capsys.readouterr().out.splitlines()[-1].split()[-3:-1] == ["-", "-"]  # IS, IC-L columns


def test_profile_settings_from_the_command_line(bench, bottle_dir, tmp_path, capsys):
    out, _ = bench
    code = main(["benchmark", "--data", str(bottle_dir), "--methods", "croppaste", "--profile", "smoke",
                 "--run", f"croppaste={out / 'runs/croppaste'}", "--out", str(tmp_path / "g"), "--no-quality",
                 "--set", "cls_real_share=0", "--no-progress"])
    assert code == 0
    doc = json.loads((tmp_path / "g/results.json").read_text())
    assert doc["config"]["cls_real_share"] == 0.0  # the papers' protocol: generated pairs only
    assert doc["methods"]["croppaste"]["classification"]["trained_on"] == "generated pairs"
    capsys.readouterr()
    assert main(["benchmark", "--data", str(bottle_dir), "--methods", "patchcore", "--profile", "smoke",
                 "--set", "fusion=much", "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip()
    assert "fusion='much': expected float" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "bad").exists()


def test_output_folder_of_another_run_is_refused(bench, bottle_dir):
    out, _ = bench
    before = (out / "results.json").read_bytes()
    with pytest.raises(ConfigError, match=r"different benchmark \(seed differ\)"):
        run_benchmark(bottle_dir, out, ["patchcore"], profile="smoke", seed=1, progress=False)
    assert (out / "results.json").read_bytes() == before


def _copy_run(src: Path, dst: Path, keep, edit=lambda r: r) -> Path:
    shutil.copytree(src, dst)
    lines = [json.loads(x) for x in (src / "manifest.jsonl").read_text().splitlines() if x.strip()]
    (dst / "manifest.jsonl").write_text("".join(json.dumps(edit(r)) + "\n" for r in lines if keep(r)))
    return dst


def test_run_from_another_category_is_refused(bench, bottle_dir, tmp_path):
    out, _ = bench
    run = _copy_run(out / "runs/croppaste", tmp_path / "run", lambda r: True,
                    lambda r: {**r, "category": "cable"})
    with pytest.raises(DataError, match="category cable, not bottle"):
        run_benchmark(bottle_dir, tmp_path / "b", ["croppaste"], profile="smoke",
                      runs={"croppaste": run}, progress=False)
    assert not (tmp_path / "b" / "results.json").exists()


def test_run_missing_a_tested_defect_type_is_refused(bench, bottle_dir, tmp_path):
    out, _ = bench
    run = _copy_run(out / "runs/croppaste", tmp_path / "run", lambda r: r["defect_type"] != "contamination")
    with pytest.raises(DataError, match="no pairs for defect type.*contamination"):
        run_benchmark(bottle_dir, tmp_path / "b", ["croppaste"], profile="smoke",
                      runs={"croppaste": run}, progress=False)


def test_bad_options_exit_2_with_one_line_and_write_nothing(bottle_dir, tmp_path, capsys):
    for extra, msg in ((["--profile", "gpu"], "unknown profile 'gpu'"),
                       (["--methods", "magic"], "unknown method 'magic'")):
        args = ["benchmark", "--data", str(bottle_dir), "--methods", "patchcore", "--out", str(tmp_path / "o")]
        args += extra
        assert main(args) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("anomalyforge: error: ") and msg in err and "\n" not in err
        assert not (tmp_path / "o").exists()
    assert main(["benchmark", "--data", str(tmp_path / "nowhere"), "--methods", "patchcore",
                 "--out", str(tmp_path / "o")]) == 2
    assert "nowhere" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
