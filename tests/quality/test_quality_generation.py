"""Generation quality (IS, IC-LPIPS) on real bottle images and small runs generated in the test."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from anomalyforge.atomic import write_png_atomic
from anomalyforge.data.io import read_image
from anomalyforge.errors import ConfigError, DataError
from anomalyforge.features.backbone import to_tensor
from anomalyforge.quality.generation import (
    ClassProbabilities,
    PerceptualEmbedding,
    QualityConfig,
    generation_quality,
    score_run,
    squared_distances,
)

FAST = QualityConfig(size=96, batch_size=8)


@pytest.fixture(scope="module")
def lite_embed():
    return PerceptualEmbedding()


def test_lpips_embedding_reproduces_the_lpips_package_distance():
    """Our embedding trick (sqrt of the learned weights folded into the features) must give exactly
    lpips.LPIPS's distance: checked with the package's learned alex weights on a random backbone."""
    import lpips

    torch.manual_seed(0)
    emb = PerceptualEmbedding("alex", weights=None)
    ref = emb.lpips_model  # the same module, so the same random backbone
    x = torch.rand(4, 3, 64, 64)
    y = torch.rand(4, 3, 64, 64)
    want = ref(x * 2 - 1, y * 2 - 1).flatten().detach().numpy()
    got = np.diag(squared_distances(emb(x), emb(y)))
    assert isinstance(ref, lpips.LPIPS)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    assert want.min() > 0


def test_lite_distance_orders_real_images_by_perceptual_change(bottle_split, lite_embed):
    import cv2

    a = read_image(bottle_split.train_good[0].image, 128)
    other_good = read_image(bottle_split.train_good[1].image, 128)
    defects = [read_image(s.image, 128) for s in bottle_split.train_defects["broken_large"][:3]]
    e = lite_embed(to_tensor([a, cv2.GaussianBlur(a, (3, 3), 0.8), other_good, *defects]))
    d = squared_distances(e[:1], e)[0]
    assert d[0] == pytest.approx(0, abs=1e-5)
    # slight blur < another good bottle < every broken bottle; all within the [0, 2] cosine range
    assert d[1] < d[2] < d[3:].min() and d.max() <= 2.0
    np.testing.assert_allclose(squared_distances(e, e), squared_distances(e, e).T, atol=1e-5)


def test_imagenet_classifier_gives_probabilities_and_loads_inception_from_a_file(bottle_split, tmp_path):
    imgs = to_tensor([read_image(s.image, 96) for s in bottle_split.train_good[:3]])
    p = ClassProbabilities()(imgs)
    assert p.shape == (3, 1000)
    torch.testing.assert_close(p.sum(1), torch.ones(3))
    # a bottle seen from above is not "any class": the real weights are confident beyond uniform
    assert p.max().item() > 20 / 1000

    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False)
    torch.save(net.state_dict(), tmp_path / "inception.pth")
    inc = ClassProbabilities("inception_v3", str(tmp_path / "inception.pth"))
    assert inc.input_size == 299 and inc(imgs[:2]).shape == (2, 1000)
    with pytest.raises(ConfigError, match="weights file not found"):
        ClassProbabilities("inception_v3", str(tmp_path / "missing.pth"))


def test_copies_of_the_few_shot_defects_have_zero_diversity(bottle_split, tmp_path):
    """A generator that only copies its few-shot images: each copy joins its own reference's cluster
    and the pairwise distances there are 0, so IC-LPIPS is 0; real held-out variety scores > 0."""
    t = "broken_large"
    refs = [s.image for s in bottle_split.train_defects[t][:3]]
    copies = []
    for i, r in enumerate(refs * 3):
        p = tmp_path / f"copy{i}.png"
        write_png_atomic(p, read_image(r))
        copies.append(p)
    q = generation_quality({t: copies}, {t: refs}, FAST, progress=False)
    e = q["types"][t]
    assert e["n"] == 9 and e["cluster_sizes"] == [3, 3, 3] and e["clusters"] == 3
    assert e["ic_lpips"] == pytest.approx(0.0, abs=1e-4)

    varied = [s.image for s in bottle_split.train_good[:9]]  # 9 different bottles around the same refs
    v = generation_quality({t: varied}, {t: refs}, FAST, progress=False)
    assert v["types"][t]["ic_lpips"] > 0.02
    assert v["all"]["n"] == 9 and v["references"]["n"] == 3 and v["all"]["is"] >= 1.0
    # embeddings recomputed per cluster (no cache) give the same figures as the cached pass
    r = generation_quality({t: varied}, {t: refs}, FAST, progress=False, cache_bytes=0)
    assert r["types"][t]["ic_lpips"] == pytest.approx(v["types"][t]["ic_lpips"], rel=1e-4)
    assert r["types"][t]["cluster_sizes"] == v["types"][t]["cluster_sizes"]


def test_generation_quality_rejects_types_without_references(bottle_split):
    with pytest.raises(ConfigError, match="no real reference"):
        generation_quality({"x": [bottle_split.train_good[0].image]}, {}, FAST, progress=False)


@pytest.mark.parametrize("kw", [{"classifier": "vit"}, {"lpips": "resnet"}, {"per_cluster": 1}, {"size": 0}])
def test_config_rejects_unknown_models_and_bad_sizes(kw):
    with pytest.raises(ConfigError):
        QualityConfig(**kw)


@pytest.fixture(scope="module")
def small_run(small_bottle, tmp_path_factory) -> Path:
    from anomalyforge.synth.run import generate_run

    run = tmp_path_factory.mktemp("q") / "run"
    generate_run(small_bottle, run, method="croppaste", n=6, size=96, progress=False)
    return run


def test_score_run_writes_quality_json_and_is_deterministic(small_run):
    a = score_run(small_run, FAST, progress=False)
    doc = json.loads((small_run / "quality.json").read_text())
    assert doc == json.loads(json.dumps(a))
    assert sorted(doc["types"]) == ["broken_large", "contamination"]
    assert all(e["n"] == 6 and e["references"] == 4 for e in doc["types"].values())
    assert doc["config"] == FAST.identity() and "device" not in doc["config"]
    b = score_run(small_run, FAST, progress=False)
    assert (a["types"], a["all"]) == (b["types"], b["all"])
    # the values: those of the kept pairs' images against the run's own few-shot defects
    from anomalyforge.data import few_shot_split, load_dataset
    from anomalyforge.formats.manifest import read_manifest

    split = few_shot_split(load_dataset(json.loads((small_run / "run.json").read_text())["data"]), progress=False)
    gen: dict[str, list[Path]] = {}
    for r in read_manifest(small_run):
        gen.setdefault(r["defect_type"], []).append(small_run / r["image"])
    expect = generation_quality(gen, {t: [s.image for s in split.train_defects[t]] for t in gen}, FAST, progress=False)
    for t, e in doc["types"].items():
        assert e["is"] == pytest.approx(expect["types"][t]["is"], rel=1e-4)
        assert e["ic_lpips"] == pytest.approx(expect["types"][t]["ic_lpips"], rel=1e-4)
        assert 1.0 <= e["is"] <= 6 and e["ic_lpips"] > 0.005  # 6 pasted pairs: some variety, never zero
    assert doc["all"]["is"] == pytest.approx(expect["all"]["is"], rel=1e-4) and doc["all"]["n"] == 12


def test_cli_quality_prints_a_table_and_bad_input_leaves_nothing(small_run, tmp_path, capsys):
    from anomalyforge.cli import main

    assert main(["quality", str(small_run), "--no-progress", "--per-cluster", "4"]) == 0
    out = capsys.readouterr().out
    assert "IC-LPIPS" in out and "broken_large" in out and "(real few-shot)" in out
    # several runs: one comparison row each, the same figures as quality.json
    assert main(["quality", str(small_run), str(small_run), "--no-progress", "--per-cluster", "4"]) == 0
    rows = [r for r in capsys.readouterr().out.splitlines() if r.startswith(str(small_run))]
    doc = json.loads((small_run / "quality.json").read_text())
    assert len(rows) == 2 and rows[0].split()[1:] == ["croppaste", "12", f"{doc['all']['is']:.3f}",
                                                      f"{doc['all']['is_std']:.3f}", f"{doc['all']['ic_lpips']:.3f}"]

    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["quality", str(empty), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("anomalyforge: error:") and "not a generation run" in err and "\n" not in err
    assert main(["quality", str(small_run), "--classifier", "vit", "--no-progress"]) == 2
    assert "vit" in capsys.readouterr().err
    assert not (empty / "quality.json").exists()

    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(small_run, broken)
    (broken / "quality.json").unlink()
    gone = sorted((broken / "images").rglob("*.png"))[3]
    gone.unlink()
    assert main(["quality", str(broken), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert str(gone) in err and "image file missing" in err and "\n" not in err
    assert not (broken / "quality.json").exists()
    with pytest.raises(DataError):
        score_run(tmp_path / "missing", FAST, progress=False)
