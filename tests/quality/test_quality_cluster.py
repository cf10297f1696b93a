"""Adaptive multi-round clustering: the algorithm on constructed features, then real bottle defects."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from anomalyforge.cli import main
from anomalyforge.errors import ConfigError, DataError
from anomalyforge.quality.cluster import (
    ClusterConfig,
    adaptive_cluster,
    apply_subtypes,
    base_type,
    dense_threshold,
    read_clusters,
)
from anomalyforge.quality.features import colour_features, deep_features, region_features, texture_features


def _blobs(centres, n_each, seed=0, spread=0.05):
    rng = np.random.default_rng(seed)
    return np.concatenate([c + spread * rng.standard_normal((n_each, len(c))) for c in np.asarray(centres, float)])


def test_separated_blobs_give_their_clusters_deterministically():
    x = _blobs([[0, 0], [5, 0], [0, 5]], 6)
    labels, log = adaptive_cluster(x, seed=3)
    assert len(set(labels)) == 3
    for b in range(3):  # every blob is exactly one cluster
        assert len(set(labels[b * 6:(b + 1) * 6])) == 1
    assert np.array_equal(labels, adaptive_cluster(x, seed=3)[0])
    ks = {r["k"] for r in log[0]["scores"]}  # k = 2..6; partitions with singletons are skipped
    assert log[0]["round"] == 1 and {2, 3} <= ks <= {2, 3, 4, 5, 6}


def test_dense_cluster_is_split_in_a_later_round():
    # a small far group A and a big group made of two sub-groups B, C. With k limited to 2, round 1
    # can only separate A from B+C; B+C (40) exceeds N/(log(0.1N)+0.4) = 23.4 and is split again.
    x = np.concatenate([_blobs([[0, 0]], 4, 1), _blobs([[100, 0]], 20, 2), _blobs([[100, 3]], 20, 3)])
    assert 40 > dense_threshold(len(x)) > 20
    cfg = dict(k_max=2)
    one_round, _ = adaptive_cluster(x, seed=0, config=ClusterConfig(max_rounds=1, **cfg))
    assert len(set(one_round)) == 2
    labels, log = adaptive_cluster(x, seed=0, config=ClusterConfig(**cfg))
    assert len(set(labels)) == 3
    assert len(set(labels[4:24])) == 1 and len(set(labels[24:])) == 1 and labels[4] != labels[24]
    assert any(r["round"] == 2 for r in log)


def test_too_few_samples_stay_whole_and_threshold_is_paper_formula():
    labels, log = adaptive_cluster(np.eye(3), seed=0)
    assert labels.tolist() == [0, 0, 0] and "kept whole" in log[0]["note"]
    assert math.isinf(dense_threshold(5))  # log(0.5) + 0.4 < 0: no cluster can be dense
    assert dense_threshold(100) == pytest.approx(100 / (math.log(10) + 0.4))


def test_region_descriptors_measure_inside_the_mask():
    img = np.zeros((32, 32, 3), np.uint8)
    img[:, 16:] = (200, 30, 30)
    mask = np.zeros((32, 32), np.uint8)
    mask[:, 16:] = 255
    c = colour_features(img, mask)
    assert c[3:].max() < 1e-3 and c[1] > 40  # uniform red inside: no spread, large a*
    t = texture_features(img, mask)
    assert t[:10].sum() == pytest.approx(1) and t[10:].sum() == pytest.approx(1)
    identity = lambda x: [x]  # noqa: E731 - pooling an RGB "feature map" gives the mean colour
    d = deep_features([img], [mask], identity)
    assert np.allclose(d[0], np.array([200, 30, 30]) / 255, atol=1e-4)
    f = region_features([img, 255 - img, img], [mask] * 3, identity)
    assert f.shape[0] == 3 and np.isfinite(f).all()
    with pytest.raises(ConfigError, match="empty defect mask"):
        colour_features(img, np.zeros_like(mask))


def test_cli_clusters_real_bottle_defects(small_bottle, tmp_path, capsys):
    from anomalyforge.data import few_shot_split, load_dataset

    bottle_split = few_shot_split(load_dataset(small_bottle), progress=False)
    assert all(len(v) == 4 for v in bottle_split.train_defects.values())
    out = tmp_path / "clusters"
    assert main(["cluster", "--data", str(small_bottle), "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    doc = json.loads((out / "clusters.json").read_text())
    clusters = doc["clusters"]
    assert set(clusters) == set(bottle_split.train_defects) and doc["config"]["k_max"] == ClusterConfig.k_max
    for t, cs in clusters.items():
        members = [m for c in cs for m in c["members"]]
        assert sorted(members) == sorted(s.id for s in bottle_split.train_defects[t])  # each exactly once
        for c in cs:
            assert c["name"].startswith(f"{t}@") and f"{c['name']} ({len(c['members'])})" in printed
            assert (out / "sheets" / f"{c['name']}.png").stat().st_size > 0
            assert len(c["members"]) >= 2 or len(cs) == 1
    sub = apply_subtypes(bottle_split, read_clusters(out))
    assert {base_type(n) for n in sub.defect_types} == set(clusters)
    assert sum(len(v) for v in sub.defects.values()) == sum(len(v) for v in bottle_split.train_defects.values())
    stale = {t: [{"name": f"{t}@0", "members": ["999"]}] for t in clusters}
    with pytest.raises(ConfigError, match="999"):
        apply_subtypes(bottle_split, stale)


def test_cli_cluster_bad_path(tmp_path, capsys):
    assert main(["cluster", "--data", str(tmp_path / "missing"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("anomalyforge: error: ") and "missing" in err


def test_generate_run_with_subtypes(small_bottle, tmp_path):
    """The run machinery fits and generates per sub-type; "auto" on a resumed run reuses its clusters."""
    from anomalyforge.data import few_shot_split, load_dataset
    from anomalyforge.data.fitdata import FitData
    from anomalyforge.formats.manifest import read_manifest
    from anomalyforge.quality.cluster import write_clusters
    from anomalyforge.synth.run import generate_run

    split = few_shot_split(load_dataset(small_bottle), progress=False)
    clusters = {t: [{"name": f"{t}@0", "members": [s.id for s in v[:2]]},
                    {"name": f"{t}@1", "members": [s.id for s in v[2:]]}] for t, v in split.train_defects.items()}
    fd = FitData(split.category, 64, dict(split.train_defects), list(split.train_good))
    write_clusters(tmp_path / "given", fd, clusters, {}, ClusterConfig(size=64), 0)
    run = tmp_path / "run"
    generate_run(small_bottle, run, method="croppaste", n=2, size=64,
                 subtypes=str(tmp_path / "given" / "clusters.json"), progress=False)
    cfg = json.loads((run / "run.json").read_text())
    assert cfg["types"] == sorted(c["name"] for cs in clusters.values() for c in cs)
    assert {r["defect_type"] for r in read_manifest(run)} == set(cfg["types"])
    assert read_clusters(run / "clusters") == clusters
    # resuming with "auto" reuses the run's clusters instead of re-clustering: same types, nothing new
    again = generate_run(small_bottle, run, method="croppaste", n=2, size=64, subtypes="auto", progress=False)
    assert again["new"] == 0 and json.loads((run / "run.json").read_text())["types"] == cfg["types"]
    with pytest.raises(DataError, match="nope.json"):
        generate_run(small_bottle, tmp_path / "bad", method="croppaste", n=1, size=64,
                     subtypes=str(tmp_path / "nope.json"), progress=False)
    assert not (tmp_path / "bad").exists()


def test_vit_extractor_gives_patch_token_maps():
    """The pluggable ViT path on a small random torchvision ViT (users pass ViT-B/16 weights)."""
    import torch
    from torchvision.models import VisionTransformer

    from anomalyforge.quality.features import ViTExtractor, make_extractor

    net = VisionTransformer(image_size=64, patch_size=16, num_layers=3, num_heads=2, hidden_dim=32, mlp_dim=64)
    vit = ViTExtractor(net, blocks=(0, 2))
    maps = vit(torch.rand(2, 3, 40, 56))
    assert [tuple(m.shape) for m in maps] == [(2, 32, 4, 4)] * 2
    mask = np.zeros((40, 56), np.uint8)
    mask[:20] = 255
    assert deep_features([np.zeros((40, 56, 3), np.uint8)], [mask], vit).shape == (1, 64)
    with pytest.raises(ConfigError, match="not found"):
        make_extractor("vit", "/nonexistent/vit.pth")
    with pytest.raises(ConfigError, match="needs weights"):
        make_extractor("vit", "imagenet")
    with pytest.raises(ConfigError, match="unknown feature extractor"):
        make_extractor("sift")


def test_too_few_defects_are_kept_whole_and_said_so(bottle_split):
    from anomalyforge.data.fitdata import FitData
    from anomalyforge.quality.cluster import cluster_category

    fd = FitData("bottle", 64, {"broken_small": bottle_split.train_defects["broken_small"][:3]}, [])
    notes: list[str] = []
    clusters = cluster_category(fd, notes=notes, progress=False)
    assert clusters == {"broken_small": [{"name": "broken_small@0",
                                          "members": [s.id for s in bottle_split.train_defects["broken_small"][:3]]}]}
    assert notes == ["broken_small: 3 samples < 4: kept whole"]
    with pytest.raises(ConfigError, match="no few-shot defects"):
        cluster_category(FitData("bottle", 64, {}, []), progress=False)
