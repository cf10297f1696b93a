import json

import pytest

from anomalyforge.errors import ConfigError
from anomalyforge.inspect.profiles import PROFILES, get_profile


def test_known_profiles_are_json_and_sized_as_documented():
    assert {"smoke", "cpu", "paper"} <= set(PROFILES)
    for name in PROFILES:
        d = get_profile(name).to_dict()
        assert json.loads(json.dumps(d))["name"] == name
    assert get_profile("cpu").size == 256 and get_profile("paper").size == 256
    assert get_profile("paper").localizer == "draem_unet" and get_profile("paper").epochs == 200
    # the papers' classifier learns from generated pairs only; ours also from the real few-shot defects
    assert get_profile("paper").cls_real_share == 0.0 and get_profile("cpu").cls_real_share == 0.5
    assert get_profile("smoke").size < get_profile("cpu").size


def test_unknown_profile_lists_the_known_ones():
    with pytest.raises(ConfigError, match="unknown profile 'gpu'.*smoke.*cpu.*paper"):
        get_profile("gpu")


def test_overrides_are_checked():
    assert get_profile("smoke", steps=7).steps == 7
    with pytest.raises(ConfigError, match="no setting"):
        get_profile("smoke", stepz=7)
    with pytest.raises(ConfigError, match="unknown localisation model"):
        get_profile("smoke", localizer="unet3000")
    with pytest.raises(ConfigError, match="unknown cls_input 'mask'; available: image, region, ensemble, choose"):
        get_profile("smoke", cls_input="mask")
    # the whole-image default is left out of the config (results written before it still resume)
    assert "cls_input" not in get_profile("smoke").to_dict()
    assert get_profile("smoke", cls_input="region").to_dict()["cls_input"] == "region"
    # values as the command line parses them (JSON): checked against each setting's type
    p = get_profile("cpu", fusion=0, levels=[1, 2], score_pool=None, cls_real_share=1)
    assert (p.fusion, p.levels, p.score_pool, p.cls_real_share) == (0.0, (1, 2), None, 1.0)
    assert isinstance(p.fusion, float) and p.to_dict()["levels"] == [1, 2]
    for bad, want in ((dict(fusion="x"), "fusion='x': expected float"), (dict(steps=1.5), "steps=1.5: expected int"),
                      (dict(augment=1), "augment=1: expected bool"), (dict(steps=True), "expected int")):
        with pytest.raises(ConfigError, match=want):
            get_profile("cpu", **bad)


def test_fold_steps_is_recorded_only_when_set():
    # 0 (the refits train for `steps`) is left out of the config, so results written before still resume
    assert get_profile("smoke").fold_steps == 0 and "fold_steps" not in get_profile("smoke").to_dict()
    cpu = get_profile("cpu")
    assert (cpu.steps, cpu.fold_steps, cpu.to_dict()["fold_steps"]) == (1000, 500, 500)
    assert get_profile("auto").fold_steps == 500
    assert "fold_steps" not in get_profile("cpu", fold_steps=0).to_dict()
