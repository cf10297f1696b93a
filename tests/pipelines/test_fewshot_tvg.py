"""The few-shot study with TVG's generators (`--goods`): torchvision arms and the variance-aware
VAE, on a small copy of real bottle data; the choice is saved in the study's config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from anomalyforge.errors import ConfigError
from anomalyforge.pipelines.fewshot import run_fewshot_benchmark
from anomalyforge.synth.good import DiffusionGoodConfig, TorchvisionGoodConfig


@pytest.fixture(scope="module")
def tiny_bottle(bottle_dir: Path, tmp_path_factory) -> Path:
    """bottle with 3 good training images, 2 test goods, 4 images of one defect type (symlinks)."""
    root = tmp_path_factory.mktemp("fs_tvg") / "bottle"
    for sub, n in (("train/good", 3), ("test/good", 2)):
        (root / sub).mkdir(parents=True)
        for p in sorted((bottle_dir / sub).glob("*.png"))[:n]:
            (root / sub / p.name).symlink_to(p)
    t = "broken_large"
    (root / "test" / t).mkdir(parents=True)
    (root / "ground_truth" / t).mkdir(parents=True)
    for p in sorted((bottle_dir / "test" / t).glob("*.png"))[:4]:
        (root / "test" / t / p.name).symlink_to(p)
        m = f"{p.stem}_mask.png"
        (root / "ground_truth" / t / m).symlink_to(bottle_dir / "ground_truth" / t / m)
    return root


def test_fewshot_with_a_torchvision_arm_records_it(tiny_bottle, tmp_path):
    out = tmp_path / "fs"
    doc = run_fewshot_benchmark(tiny_bottle, out, shots=(1,), generated=2, seeds=(0,), profile="smoke",
                                generator=TorchvisionGoodConfig("strategy2"), progress=False)
    assert sorted(doc["rows"]) == ["af-patchcore/s0-k1-g0", "af-patchcore/s0-k1-g2"]
    assert doc["rows"]["af-patchcore/s0-k1-g2"]["bank"] == 3 * 64
    cfg = json.loads((out / "fewshot.json").read_text())["config"]
    assert cfg["goods"] == {"generator": "strategy2"} and cfg["augment"] is None
    assert "TVG generator strategy2" in (out / "fewshot.html").read_text()
    with pytest.raises(ConfigError, match="different few-shot study"):  # another arm is another study
        run_fewshot_benchmark(tiny_bottle, out, shots=(1,), generated=2, seeds=(0,), profile="smoke",
                              generator=TorchvisionGoodConfig("randaugment"), progress=False)
    with pytest.raises(ConfigError, match="not both"):
        run_fewshot_benchmark(tiny_bottle, tmp_path / "both", shots=(1,), generated=2, seeds=(0,), profile="smoke",
                              diffusion=DiffusionGoodConfig("x"), generator=TorchvisionGoodConfig("strategy1"),
                              progress=False)


def test_cli_fewshot_goods_vae_offline(tiny_bottle, tmp_path, capsys):
    from anomalyforge.cli import main

    out = tmp_path / "fs"
    assert main(["fewshot", "--data", str(tiny_bottle), "--out", str(out), "--shots", "1", "--seeds", "0",
                 "--generated", "2", "--profile", "smoke", "--goods", "tvg", "--vae-fit-steps", "5",
                 "--no-progress"]) == 0
    captured = capsys.readouterr()
    notes = [line for line in captured.err.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "no --vae" in notes[0] and "no --clip" in notes[0]
    assert "few-shot detectors" in captured.out and "af-patchcore" in captured.out
    cfg = json.loads((out / "fewshot.json").read_text())["config"]["goods"]
    assert (cfg["generator"], cfg["vae"], cfg["clip"], cfg["latent"], cfg["fit"]["steps"]) == (
        "tvg", None, None, "mu+sigma*eps", 5)
