"""Shared fixtures for the diffusion tests: one tiny random-weight checkpoint per session, a few
real MVTec AD bottle few-shot images at 32 px, and one fitted AnomalyDiffusion (2 steps)."""

from __future__ import annotations

from pathlib import Path

import pytest

from anomalyforge.data.fitdata import FitData

SIZE = 32  # image side for every diffusion test: keeps a fit + generate within seconds on CPU


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    from anomalyforge.diffusion.tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model", seed=0)


@pytest.fixture(scope="session")
def ldm(tiny_model):
    from anomalyforge.diffusion.loading import load_ldm

    return load_ldm(tiny_model, device="cpu")


@pytest.fixture(scope="session")
def bottle_data(bottle_dir) -> FitData:
    """Two few-shot defects of two types and three good images from the real bottle split."""
    from anomalyforge.data import few_shot_split, load_dataset

    split = few_shot_split(load_dataset(bottle_dir))
    types = ["broken_large", "contamination"]
    return FitData(category=split.category, size=SIZE,
                   defects={t: split.train_defects[t][:2] for t in types}, good=split.train_good[:3])


def _ad_config(tiny_model: Path, **kw):
    from anomalyforge.synth.anomalydiffusion import AnomalyDiffusion

    params = dict(base_model=str(tiny_model), device="cpu", resolution=SIZE, fit_steps=2, mask_fit_steps=1,
                  train_batch=2, sampler_steps=2, spatial_backbone="tiny", spatial_fpn_channels=16,
                  mask_tries=1, progress=False)
    params.update(kw)
    return AnomalyDiffusion.make_config(params)


@pytest.fixture(scope="session")
def fitted(tiny_model, bottle_data, tmp_path_factory):
    """(generator, state_dir) after a 2-step fit on the bottle few-shot data."""
    from anomalyforge.synth.anomalydiffusion import AnomalyDiffusion

    state = tmp_path_factory.mktemp("ad_state")
    gen = AnomalyDiffusion(_ad_config(tiny_model))
    gen.fit(bottle_data, state)
    return gen, state


@pytest.fixture(scope="session")
def ad_config(tiny_model):
    """Factory: the fast test config of AnomalyDiffusion with `**overrides`."""
    return lambda **kw: _ad_config(tiny_model, **kw)
