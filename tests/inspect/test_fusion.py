import dataclasses

import numpy as np
import pytest

from anomalyforge.errors import ConfigError
from anomalyforge.inspect.profiles import get_profile
from anomalyforge.inspect.train import FusedLocalizer, train_localizer
from anomalyforge.metrics.ranking import auroc


def _heldout(fit, n=4, seed=99):
    from inspectdata import croppaste

    return croppaste(fit, n, seed)


def test_fused_localizer_flags_pasted_defects_and_is_deterministic(bottle_fit64, bottle_pairs64):
    prof = get_profile("smoke", steps=30, lr=3e-3, fusion=0.5, fusion_holdout=0.25)
    a = train_localizer(bottle_fit64, bottle_pairs64, prof, seed=0, progress=False)
    assert isinstance(a, FusedLocalizer) and a.weight == 0.5
    assert len(a.patchcore.bank) > 0 and a.sup_stats[1] > 0 and a.pc_stats[1] > 0
    val = _heldout(bottle_fit64)
    p = a.predict(val.images)
    assert p.shape == val.masks.shape and p.min() > 0 and p.max() < 1
    assert p[val.masks > 0].mean() > p[val.masks == 0].mean() + 0.05
    b = train_localizer(bottle_fit64, bottle_pairs64, prof, seed=0, progress=False)
    np.testing.assert_allclose(p, b.predict(val.images), rtol=0, atol=1e-6)
    # weight 1: the fused map is a monotone function of the PatchCore map alone
    only_pc = dataclasses.replace(a, weight=1.0)
    s, d = only_pc.predict(val.images[:2]).ravel(), a.patchcore.predict(val.images[:2]).ravel()
    order = np.argsort(d, kind="stable")
    assert np.all(np.diff(s[order]) >= -1e-6)


def test_fusion_settings_are_checked(bottle_fit64, bottle_pairs64):
    with pytest.raises(ConfigError, match="fusion weight"):
        train_localizer(bottle_fit64, bottle_pairs64, get_profile("smoke", fusion=1.5), progress=False)
    one_good = dataclasses.replace(bottle_fit64, good=bottle_fit64.good[:1])
    with pytest.raises(ConfigError, match="at least 2 good"):
        train_localizer(one_good, bottle_pairs64, get_profile("smoke", fusion=0.5), progress=False)


def test_benchmark_records_the_fused_model(bottle_dir, tmp_path, monkeypatch):
    import json

    from anomalyforge.inspect.patchcore import PatchCore
    from anomalyforge.pipelines.benchmark import run_benchmark

    fits = []
    real_fit = PatchCore.fit

    def counting_fit(self, images, progress=True):
        fits.append(len(images))
        return real_fit(self, images, progress)
    monkeypatch.setattr(PatchCore, "fit", counting_fit)
    prof = get_profile("smoke", fusion=0.5)
    run_benchmark(bottle_dir, tmp_path, ["croppaste", "patchcore"], profile=prof, n=4, progress=False)
    # the fused model's PatchCore and the baseline are one model: its bank is fitted once (188 goods)
    assert fits == [209 - 21]
    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["config"]["fusion"] == 0.5
    e = doc["methods"]["croppaste"]
    assert e["model"] == "feature_head+patchcore"
    px = e["localization"]["pixel"]
    assert 0.5 < px["auroc"] <= 1.0  # fused PatchCore evidence ranks real defect pixels above chance
    z = np.load(tmp_path / e["artifacts"]["maps"])
    maps, masks = z["maps"].astype(np.float32), z["masks"] > 0
    assert maps.shape == (61, 64, 64) and maps.min() > 0 and maps.max() < 1  # squashed into (0, 1)
    # the figures are those of the saved (fused) maps, up to their float16 rounding
    assert auroc(maps, masks) == pytest.approx(px["auroc"], abs=2e-3)
    assert auroc(z["image_scores"], z["labels"]) == pytest.approx(e["localization"]["image"]["auroc"], abs=1e-9)
    # the heat-map scale comes from the goods the fused model holds out (10 % of 209), not from test images
    sc = e["display_scale"]
    assert sc["n_images"] == 21 and sc["pixels"] == 21 * 64 * 64 and 0 < sc["lo"] < sc["hi"] < 1
