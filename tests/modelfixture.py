"""A session-wide trained model on real MVTec AD bottle (smoke profile, 64 px, fused with PatchCore
so the exported graph holds the nearest-neighbour search), shared by the train/predict and deploy
tests (a uniquely named helper module; see tests/inspectdata.py for why)."""

from __future__ import annotations

from pathlib import Path

import pytest

from anomalyforge.inspect.profiles import get_profile

PROFILE = get_profile("smoke", fusion=0.6, quality=False)
N = 4


@pytest.fixture(scope="session")
def bottle_model(bottle_dir, tmp_path_factory) -> Path:
    from afthreads import pinned
    from anomalyforge.pipelines.train import train_model

    out = tmp_path_factory.mktemp("model") / "bottle"
    with pinned():
        train_model(bottle_dir, out, "croppaste", profile=PROFILE, n=N, progress=False)
    return out


@pytest.fixture(scope="session")
def bottle_onnx(bottle_model, tmp_path_factory) -> Path:
    from afthreads import pinned
    from anomalyforge.pipelines.predict import export_model

    out = tmp_path_factory.mktemp("onnx") / "bottle.onnx"
    with pinned():
        export_model(bottle_model, out)
    return out
