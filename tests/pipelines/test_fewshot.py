"""Few-shot PatchCore with and without generated good images, on a small copy of real bottle data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from anomalyforge.errors import ConfigError
from anomalyforge.pipelines.fewshot import (
    format_fewshot_table,
    resolve_shots,
    run_fewshot_benchmark,
    shot_indices,
    summarise,
)


@pytest.fixture(scope="module")
def small_bottle(bottle_dir: Path, tmp_path_factory) -> Path:
    """bottle with 6 good training images, 4 test goods and the first 6 images of two defect types
    (symlinks): 2 few-shot + 4 test defects per type."""
    root = tmp_path_factory.mktemp("fs") / "bottle"
    for sub, n in (("train/good", 6), ("test/good", 4)):
        (root / sub).mkdir(parents=True)
        for p in sorted((bottle_dir / sub).glob("*.png"))[:n]:
            (root / sub / p.name).symlink_to(p)
    for t in ("broken_large", "contamination"):
        (root / "test" / t).mkdir(parents=True)
        (root / "ground_truth" / t).mkdir(parents=True)
        for p in sorted((bottle_dir / "test" / t).glob("*.png"))[:6]:
            (root / "test" / t / p.name).symlink_to(p)
            m = f"{p.stem}_mask.png"
            (root / "ground_truth" / t / m).symlink_to(bottle_dir / "ground_truth" / t / m)
    return root


def test_shots_are_seeded_and_nested():
    a, b = shot_indices(50, 2, 0), shot_indices(50, 8, 0)
    np.testing.assert_array_equal(a, b[:2])
    assert len(set(b.tolist())) == 8 and not np.array_equal(b, shot_indices(50, 8, 1))
    with pytest.raises(ConfigError, match="good training images"):
        shot_indices(5, 6, 0)


def test_fewshot_benchmark_rows_summary_and_resume(small_bottle, tmp_path, monkeypatch):
    out = tmp_path / "fs"
    doc = run_fewshot_benchmark(small_bottle, out, shots=(1, 2), generated=3, seeds=(0, 1), profile="smoke",
                                progress=False)
    assert sorted(doc["rows"]) == sorted(f"af-patchcore/s{s}-k{k}-g{g}" for s in (0, 1) for k in (1, 2) for g in (0, 3))
    r = doc["rows"]["af-patchcore/s0-k2-g3"]
    assert (r["shots"], r["generated"], len(r["goods"])) == (2, 3, 2)
    assert r["goods"][:1] == doc["rows"]["af-patchcore/s0-k1-g0"]["goods"]  # nested draws
    # one bank entry per patch of the 2 + 3 images at 64 px (stride-8 grid: 8 x 8), none dropped
    assert r["bank"] == 5 * 64 and doc["rows"]["af-patchcore/s0-k2-g0"]["bank"] == 2 * 64
    for row in doc["rows"].values():
        assert 0.5 < row["localization"]["pixel"]["auroc"] <= 1.0  # real defects stand out even at 1 shot
    summary = [(e["shots"], e["generated"], e["seeds"]) for e in doc["summary"]]
    assert summary == [(1, 0, 2), (1, 3, 2), (2, 0, 2), (2, 3, 2)]
    on_disk = json.loads((out / "fewshot.json").read_text())
    assert on_disk["rows"] == json.loads(json.dumps(doc["rows"])) and (out / "fewshot.png").is_file()
    html = (out / "fewshot.html").read_text()
    assert "K good + 3 generated" in html and "data:image/png;base64," in html

    # resume: nothing is refitted; other settings in the same folder are refused
    from anomalyforge.inspect import patchcore

    real_fit = patchcore.PatchCore.fit
    monkeypatch.setattr(patchcore.PatchCore, "fit", lambda *a, **k: pytest.fail("refitted a finished model"))
    again = run_fewshot_benchmark(small_bottle, out, shots=(1, 2), generated=3, seeds=(0, 1), profile="smoke",
                                  progress=False)
    assert again["rows"] == on_disk["rows"]
    with pytest.raises(ConfigError, match=r"different few-shot study \(config differ\)"):
        run_fewshot_benchmark(small_bottle, out, shots=(1,), generated=2, seeds=(0,), profile="smoke", progress=False)

    # the same study with another seed adds that seed's rows and keeps the others as they were
    fits = []
    monkeypatch.setattr(patchcore.PatchCore, "fit", lambda self, *a, **k: fits.append(1) or real_fit(self, *a, **k))
    more = run_fewshot_benchmark(small_bottle, out, shots=(1,), generated=3, seeds=(2,), profile="smoke",
                                 progress=False)
    assert len(fits) == 2 and sorted(set(more["rows"]) - set(on_disk["rows"])) == [
        "af-patchcore/s2-k1-g0", "af-patchcore/s2-k1-g3"]
    assert all(more["rows"][k] == v for k, v in json.loads(json.dumps(on_disk["rows"])).items())
    assert (more["config"]["seeds"], more["config"]["shots"]) == ([0, 1, 2], [1, 2])
    assert [(e["shots"], e["generated"], e["seeds"]) for e in more["summary"]] == [(1, 0, 3), (1, 3, 3), (2, 0, 2),
                                                                                 (2, 3, 2)]


def test_full_shots_is_every_good_training_image():
    assert resolve_shots([1, "full", "5", 1], 40) == (1, 40, 5)
    with pytest.raises(ConfigError, match="'all'"):
        resolve_shots(["all"], 40)


def test_summary_is_mean_and_std_over_seeds():
    def row(s, v):
        loc = {"image": {"auroc": v}, "pixel": {"auroc": v, "ap": v, "aupro": None}}
        return {"seed": s, "shots": 1, "generated": 0, "localization": loc}

    (e,) = summarise({"a": row(0, 0.6), "b": row(1, 0.8)})
    assert e["image_auroc"] == pytest.approx(0.7) and e["image_auroc_std"] == pytest.approx(0.1)
    assert e["pixel_aupro"] is None and e["seeds"] == 2


def test_cli_fewshot_bad_input_is_one_line_and_writes_nothing(small_bottle, tmp_path, capsys):
    from anomalyforge.cli import main

    out = tmp_path / "fs"
    assert main(["fewshot", "--data", str(small_bottle), "--out", str(out), "--shots", "1,99", "--profile", "smoke",
                 "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("anomalyforge: error:") and "99 shots" in err and "\n" not in err
    assert main(["fewshot", "--data", str(small_bottle), "--out", str(out), "--shots", "one", "--no-progress"]) == 2
    assert "comma-separated integers" in capsys.readouterr().err
    assert main(["fewshot", "--data", str(small_bottle), "--out", str(out), "--augment", "colour=1",
                 "--no-progress"]) == 2
    assert "unexpected keyword argument 'colour'" in capsys.readouterr().err
    assert not out.exists()
    assert main(["fewshot", "--data", str(small_bottle), "--out", str(out), "--shots", "1", "--seeds", "0",
                 "--generated", "2", "--profile", "smoke", "--augment", "rotation=0", "--augment", "scale=[1, 1]",
                 "--no-progress"]) == 0
    assert "few-shot detectors" in capsys.readouterr().out
    cfg = json.loads((out / "fewshot.json").read_text())["config"]["augment"]
    assert (cfg["rotation"], cfg["scale"], cfg["translate"]) == (0, [1, 1], 0.03)


def test_fewshot_with_diffusion_goods_loads_the_model_once_and_fails_before_output(small_bottle, tmp_path,
                                                                                   monkeypatch):
    from anomalyforge.diffusion.tiny import make_tiny_model
    from anomalyforge.pipelines import fewshot as fewshot_mod
    from anomalyforge.synth.good import DiffusionGoodConfig

    model = make_tiny_model(tmp_path / "tiny")
    loads = []
    real_load = fewshot_mod.load_ldm
    monkeypatch.setattr(fewshot_mod, "load_ldm", lambda *a, **k: loads.append(a) or real_load(*a, **k))
    cfg = DiffusionGoodConfig(str(model), strength=0.5, steps=2, device="cpu")
    doc = run_fewshot_benchmark(small_bottle, tmp_path / "fs", shots=(1, 2), generated=2, seeds=(0,),
                                profile="smoke", diffusion=cfg, progress=False)
    assert len(loads) == 1 and sorted(doc["rows"]) == [f"af-patchcore/s0-k{k}-g{g}" for k in (1, 2) for g in (0, 2)]
    assert doc["config"]["diffusion"]["strength"] == 0.5 and doc["config"]["augment"] is None
    assert doc["rows"]["af-patchcore/s0-k2-g2"]["bank"] == 4 * 64
    assert "SDEdit variations" in (tmp_path / "fs" / "fewshot.html").read_text()

    bad = DiffusionGoodConfig(str(tmp_path / "no-model"), device="cpu")
    with pytest.raises(ConfigError, match="base model"):
        run_fewshot_benchmark(small_bottle, tmp_path / "bad", shots=(1,), generated=2, seeds=(0,),
                              profile="smoke", diffusion=bad, progress=False)
    assert not (tmp_path / "bad").exists()


def test_fewshot_over_detectors_pairs_the_gain_by_seed(small_bottle, tmp_path):
    """Two detectors see the same K-shot draws and generated goods; the gain is paired by seed."""
    from anomalyforge.inspect.anomalib_detectors import DetectorConfig

    doc = run_fewshot_benchmark(small_bottle, tmp_path / "fs", shots=(1,), generated=2, seeds=(0, 1),
                                profile="smoke", progress=False, detectors=("af-patchcore", "patchcore"),
                                detector_config=DetectorConfig(epochs=1))
    assert doc["config"]["shots"] == [1] and doc["config"]["n_good"] == 6
    assert doc["config"]["detectors"] == ["af-patchcore", "patchcore"] and doc["config"]["anomalib"]["size"] == 64
    rows = doc["rows"]
    assert len(rows) == 2 * 2 * 2
    for s in (0, 1):
        assert rows[f"patchcore/s{s}-k1-g2"]["goods"] == rows[f"af-patchcore/s{s}-k1-g2"]["goods"]
        assert rows[f"patchcore/s{s}-k1-g0"]["localization"]["pixel"]["auroc"] > 0.5
    (e,) = [e for e in doc["summary"] if (e["detector"], e["shots"], e["generated"]) == ("patchcore", 1, 2)]
    diffs = [rows[f"patchcore/s{s}-k1-g2"]["localization"]["image"]["auroc"]
             - rows[f"patchcore/s{s}-k1-g0"]["localization"]["image"]["auroc"] for s in (0, 1)]
    assert e["gain_image_auroc"] == pytest.approx(np.mean(diffs)) and e["gain_image_auroc_std"] == pytest.approx(
        np.std(diffs))
    assert e["seeds"] == 2 and e["time_s"] > 0
    html = (tmp_path / "fs" / "fewshot.html").read_text()
    assert "patchcore: K good + 2 generated" not in html and "gain (image AUROC)" in html and "EfficientNet" in html
    assert "af-patchcore" in format_fewshot_table(doc) and "gain img" in format_fewshot_table(doc)


def test_cli_fewshot_bad_detector_is_one_line(small_bottle, tmp_path, capsys):
    from anomalyforge.cli import main

    out = tmp_path / "fs"
    assert main(["fewshot", "--data", str(small_bottle), "--out", str(out), "--detectors", "patchcore,padin",
                 "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown detector 'padin'" in err and "padim" in err and "\n" not in err
    assert main(["fewshot", "--data", str(small_bottle), "--out", str(out), "--detectors", "efficient_ad",
                 "--no-progress"]) == 2
    assert "not available offline" in capsys.readouterr().err
    assert not out.exists()
