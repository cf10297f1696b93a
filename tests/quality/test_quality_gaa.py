"""The gaa generator end to end on a tiny random diffusion model and real few-shot images."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from qualitydata import one_thread

from anomalyforge.data.fitdata import FitData
from anomalyforge.diffusion.blended import feather_mask
from anomalyforge.errors import ConfigError
from anomalyforge.synth.base import get_generator
from anomalyforge.synth.gaa import GAA

SIZE = 32


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from anomalyforge.diffusion.tiny import make_tiny_model

    with one_thread():
        return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model", seed=0)


def _config(tiny_model: Path, **kw):
    params = dict(base_model=str(tiny_model), device="cpu", resolution=SIZE, fit_steps=2, train_batch=2,
                  sampler_steps=2, spatial_backbone="tiny", spatial_fpn_channels=16, progress=False)
    params.update(kw)
    return GAA.make_config(params)


@pytest.fixture(scope="module")
def bottle_small(bottle_split) -> FitData:
    return FitData(category="bottle", size=SIZE, good=bottle_split.train_good[:3],
                   defects={"contamination": bottle_split.train_defects["contamination"][:4],
                            "broken_large": bottle_split.train_defects["broken_large"][:2]})


@pytest.fixture(scope="module")
def fitted(tiny_model, bottle_small, tmp_path_factory):
    state = tmp_path_factory.mktemp("gaa_state")
    gen = GAA(_config(tiny_model))
    with one_thread():
        gen.fit(bottle_small, state)
    return gen, state


def _good(data: FitData, source: str) -> np.ndarray:
    return next(data.image(g) for g in data.good if str(g.image) == source)


def test_registered_with_paper_token_counts():
    cfg = get_generator("gaa").Config()
    assert cfg.anomaly_tokens == 8 and cfg.spatial_tokens == 4 and cfg.mask_source == "region"


def test_fit_clusters_subtypes_and_generates_inside_masks(fitted, bottle_small):
    gen, state = fitted
    meta = json.loads((state / "gaa.json").read_text())
    assert set(meta["clusters"]) == {"contamination", "broken_large"}
    assert meta["logical"] == {}  # bottle defects are local damage, not whole components
    assert all(t.split("@")[0] in meta["clusters"] for t in gen.types)
    pairs = gen.generate("contamination", [1, 2, 3])
    c = gen.config
    for p in pairs:
        assert p.params["subtype"].startswith("contamination@")
        assert p.params["mask_from"] in ("foreground", "edge", "in_place")
        good = _good(bottle_small, p.source)
        outer = feather_mask(p.mask, c.dilate_px + c.feather_px, 0) > 0
        assert np.array_equal(p.image[~outer], good[~outer])  # outside the mask: the good image
        assert p.mask.any() and not np.array_equal(p.image[p.mask > 0], good[p.mask > 0])


def test_load_reproduces_pairs(fitted, bottle_small, tiny_model):
    gen, state = fitted
    first = gen.generate("broken_large", [7, 8])
    other = GAA(_config(tiny_model))
    other.load(bottle_small, state)
    again = other.generate("broken_large", [7, 8])
    for a, b in zip(first, again, strict=False):
        assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
    with pytest.raises(ConfigError, match="was not fitted"):
        other.generate("scratch", [0])
    with pytest.raises(ConfigError, match="no gaa state"):
        GAA(_config(tiny_model)).load(bottle_small, state.parent)
    with pytest.raises(ConfigError, match="region"):
        GAA(_config(tiny_model, mask_source="synthesis")).fit(bottle_small, state.parent / "x")


def test_logical_type_masks_are_whole_regions(tiny_model, juice_dir, tmp_path):
    """MVTec LOCO juice bottle: logical anomalies are generated into whole semantic regions."""
    from anomalyforge.data import few_shot_split, load_dataset

    split = few_shot_split(load_dataset(juice_dir), progress=False)
    data = FitData(category=split.category, size=64, good=split.train_good[:2],
                   defects={"logical_anomalies": split.train_defects["logical_anomalies"][:2]})
    gen = GAA(_config(tiny_model, cluster=False, logical_types="logical_anomalies"))
    gen.fit(data, tmp_path / "state")
    assert gen.logical["logical_anomalies"]  # the regions its few-shot masks cover
    (p,) = gen.generate("logical_anomalies", [5])
    assert p.params["mask_from"] == "region"
    good = next(g for g in data.good if str(g.image) == p.source)
    rm = gen._region_map(data, good)
    regions = [cv2.resize(rm.mask(n), (SIZE, SIZE), interpolation=cv2.INTER_NEAREST) for n in rm.names]
    scaled = cv2.resize(p.mask, (SIZE, SIZE), interpolation=cv2.INTER_NEAREST)
    assert any(np.array_equal(scaled > 0, r > 0) for r in regions)


def test_user_semantic_regions_define_the_reference(tiny_model, bottle_small, tmp_path):
    from anomalyforge.atomic import write_png_atomic

    stem = bottle_small.good[1].image.stem
    cap = np.zeros((512, 512), np.uint8)
    cap[200:300, 200:300] = 255
    write_png_atomic(tmp_path / "cap" / f"{stem}.png", cap)
    gen = GAA(_config(tiny_model, semantic_regions=str(tmp_path)))
    model = gen._regions(bottle_small)
    assert model.names == ["background", "cap"] and model.source == "user"
    with pytest.raises(ConfigError, match="no region masks for any good"):
        GAA(_config(tiny_model, semantic_regions=str(tmp_path))).\
            _regions(FitData("bottle", SIZE, bottle_small.defects, bottle_small.good[:1]))


def test_generate_run_keeps_the_better_half_of_gaa_pairs_by_default(tiny_model, bottle_dir, tmp_path):
    """`generate --method gaa --n N` generates 2N pairs per type and keeps the N best by ARS."""
    from anomalyforge.formats.manifest import read_manifest
    from anomalyforge.quality.ars import ARSConfig
    from anomalyforge.synth.run import generate_run

    params = dataclasses.asdict(_config(tiny_model))
    small = ARSConfig(size=64, steps=10, hidden=32, batch_features=128, max_images=4)
    with one_thread():
        s = generate_run(bottle_dir, tmp_path / "run", method="gaa", n=2, size=SIZE, params=params,
                         types=["contamination"], progress=False, filter_config=small)
    assert s["pairs"] == {"contamination": 4} and s["kept"] == {"contamination": 2}
    recs = read_manifest(tmp_path / "run", include_rejected=True)
    assert all(isinstance(r["scores"]["ars"], float) for r in recs)
    best = sorted((r["scores"]["ars"] for r in recs), reverse=True)[:2]
    assert sorted(r["scores"]["ars"] for r in recs if not r["rejected"]) == sorted(best)


def test_paper_preset_and_edge_and_combined_masks(fitted):
    p = GAA.make_config({"preset": "paper"})
    assert (p.fit_steps, p.sampler_steps, p.eta, p.resolution, p.place_mode) == (310_000, 200, 1.0, 256, "random")
    gen, _ = fitted
    sub = next(t for t in gen.types if t.startswith("contamination@"))
    seeds = list(range(12))
    old = (gen.config.place_mode, gen.config.combined_types)
    try:
        _, how = gen._masks_for(sub, seeds)
        assert {"foreground", "edge"} <= set(how) | {"in_place"} and "edge" in how  # random: inside or edge
        gen.config.place_mode, gen.config.combined_types = "edge", ("contamination",)
        masks, how = gen._masks_for(sub, seeds[:4])
        assert all(h in ("combined_edge", "in_place") for h in how) and "combined_edge" in how
        assert all(m.any() for m in masks)
    finally:
        gen.config.place_mode, gen.config.combined_types = old
