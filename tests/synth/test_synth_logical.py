"""The model-free logical-anomaly generator on real MVTec LOCO juice bottles."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from synthdata import make_small_loco

from anomalyforge.data import few_shot_split, fit_data, load_dataset
from anomalyforge.data.io import read_image
from anomalyforge.errors import ConfigError
from anomalyforge.synth.base import get_generator
from anomalyforge.synth.logical import OPS, Logical

SIZE = 128
TYPE = "logical_anomalies"
# training third (natural order): 000 (both labels missing), 024 (whole juice), 040 (a small part);
# the other six are test defects
DEFECTS = ("000", "024", "040", "100", "101", "102", "103", "104", "105")


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):  # KMeans: see tests/masks/test_regions.py
        yield


@pytest.fixture(scope="module")
def juice_fd(juice_dir: Path, tmp_path_factory):
    root = make_small_loco(juice_dir, tmp_path_factory.mktemp("data") / "juice_bottle",
                           good=("000", "050", "120", "200", "300", "330"), defects=DEFECTS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        split = few_shot_split(load_dataset(root), progress=False)
    return fit_data(split, size=SIZE)


@pytest.fixture(scope="module")
def fitted(juice_fd, tmp_path_factory):
    state = tmp_path_factory.mktemp("state")
    gen = Logical(Logical.make_config())
    gen.fit(juice_fd, state)
    return gen, state


def test_templates_come_from_the_few_shot_masks_only(fitted, juice_fd):
    gen, _ = fitted
    train_ids = [s.id for s in juice_fd.defects[TYPE]]
    assert train_ids == ["000", "024", "040"]
    rows = gen.templates[TYPE]
    assert [r["index"] for r in rows] == [0, 1, 2]  # one template per training defect, nothing else
    for r in rows:  # a template's regions are the ones its own mask covers (registered products)
        m = juice_fd.mask(juice_fd.defects[TYPE][r["index"]]) > 0
        assert r["area"] == pytest.approx(float(m.mean()), abs=1e-5)
        if r["regions"]:
            union = np.isin(gen.labels[0], [gen.names.index(n) for n in r["regions"]])
            assert m[union].mean() > 0.6 and union[m].mean() > 0.6, r
    labels_missing, juice, small = rows
    assert labels_missing["regions"] and len(juice["regions"]) >= 2  # the labels; the liquid's parts
    assert set(labels_missing["regions"]) != set(juice["regions"])
    assert small["regions"] == []  # covers no whole region: its own mask is the component


@pytest.mark.parametrize("op", OPS)
def test_each_operation_changes_a_whole_component_and_masks_it(op, fitted, juice_fd, tmp_path):
    base, state = fitted
    gen = Logical(Logical.make_config({"ops": op}))
    gen.load(juice_fd, state)
    pairs = gen.generate(TYPE, [1, 2, 3, 4])
    assert len(pairs) == 4
    goods = [str(s.image) for s in juice_fd.good]
    for p in pairs:
        assert p.params["op"] == op
        assert p.image.shape == (SIZE, SIZE, 3) and set(np.unique(p.mask)) <= {0, 255}
        src = read_image(p.source, SIZE)
        diff = np.abs(p.image.astype(int) - src.astype(int)).max(axis=2)
        m = p.mask > 0
        assert not diff[~m].any()  # nothing changed outside the mask
        assert (diff[m] > gen.config.diff_threshold).mean() >= gen.config.min_changed
        if p.params["regions"] and op != "duplicate":  # the whole component (its old place) is masked
            i = goods.index(p.source)
            comp = np.isin(base.labels[i], [base.names.index(n) for n in p.params["regions"]])
            assert m[comp].mean() == 1.0
        if op in ("move", "duplicate", "swap"):
            assert "offset" in p.params or "partner" in p.params


def test_deterministic_and_fit_load_equivalent(fitted, juice_fd, tmp_path):
    gen, state = fitted
    again = Logical(Logical.make_config())
    again.load(juice_fd, state)
    a, b = gen.generate(TYPE, [7, 8, 9]), again.generate(TYPE, [7, 8, 9])
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x.image, y.image) and np.array_equal(x.mask, y.mask) and x.params == y.params


def test_registered_and_config_errors():
    assert get_generator("logical") is Logical
    with pytest.raises(ConfigError, match="ops"):
        Logical.make_config({"ops": "remove,explode"})
    with pytest.raises(ConfigError, match="extent"):
        Logical.make_config({"extent": [0.5, 1.5]})
    with pytest.raises(ConfigError, match="model-free"):
        Logical.make_config({"fit_steps": 3})


def test_mixture_pairs_are_their_members_pairs(juice_fd, tmp_path):
    from anomalyforge.synth.mixture import Mixture, member_of

    mix = Mixture(Mixture.make_config({"methods": "croppaste,logical"}))
    mix.fit(juice_fd, tmp_path)
    seeds = [3, 4, 5, 6, 7, 8]
    pairs = mix.generate(TYPE, seeds)
    picked = {p.params["method"] for p in pairs}
    assert [p.params["method"] for p in pairs] == [("croppaste", "logical")[member_of(s, 2)] for s in seeds]
    assert picked == {"croppaste", "logical"}
    alone = Logical(Logical.make_config())
    alone.load(juice_fd, tmp_path / "logical")
    for s, p in zip(seeds, pairs, strict=True):
        if p.params["method"] == "logical":
            assert np.array_equal(alone.generate(TYPE, [s])[0].image, p.image)
    with pytest.raises(ConfigError, match="two or more"):
        Mixture.make_config({"methods": "croppaste"})
