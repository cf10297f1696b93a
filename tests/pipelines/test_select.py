"""`--profile auto`: the training-fold selection on real bottle images (64 px, tiny budget)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest

from anomalyforge.data import few_shot_split, fit_data, load_dataset
from anomalyforge.errors import ConfigError
from anomalyforge.inspect import evaluate
from anomalyforge.inspect.profiles import get_profile
from anomalyforge.pipelines import select as sel
from anomalyforge.pipelines.benchmark import run_benchmark

TINY = {"generators": ["croppaste", "logical", "mixture"], "fusion": [0.0, 0.5, 1.0], "folds": 2,
        "n_per_type": 2, "steps": 3, "cls_steps": 2, "cls_real_share": [0.5, 1.0], "canvas_goods": 4}
SMOKE = dict(size=64, n_per_type=3, head_width=16, steps=4, batch_size=4, cls_size=64, cls_steps=3,
             cls_batch_size=4, pc_projection=32, pc_max_bank=500, pc_candidates=5000, quality=False)


@pytest.fixture(scope="module")
def small(bottle_dir: Path, tmp_path_factory) -> Path:
    """bottle with 8 good training images, 2 test goods and 6 defects per type (2 of them training)."""
    dst = tmp_path_factory.mktemp("data") / "bottle"
    links = [*sorted((bottle_dir / "train" / "good").glob("*.png"))[:8],
             *sorted((bottle_dir / "test" / "good").glob("*.png"))[:2]]
    for t in ("broken_large", "contamination"):
        for p in sorted((bottle_dir / "test" / t).glob("*.png"))[:6]:
            links += [p, bottle_dir / "ground_truth" / t / f"{p.stem}_mask.png"]
    for p in links:
        q = dst / p.relative_to(bottle_dir)
        q.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(p, q)
    return dst


def _profile(**over):
    return get_profile("auto", **SMOKE, extra={"select": TINY}, **over)


def _test_paths(root: Path) -> set[str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        split = few_shot_split(load_dataset(root), progress=False)
    return {str(s.image) for v in split.test_defects.values() for s in v} | {str(s.image) for s in split.test_good}


def test_selection_records_every_candidate_and_never_opens_the_test_split(small, monkeypatch):
    opened: list[str] = []
    import anomalyforge.data.fitdata as fitdata
    import anomalyforge.inspect.train as itrain

    for mod in (fitdata, itrain):
        real = mod.read_image
        monkeypatch.setattr(mod, "read_image", lambda p, *a, _r=real, **k: (opened.append(str(p)), _r(p, *a, **k))[1])
    monkeypatch.setattr(evaluate.TestSet, "load",
                        classmethod(lambda *a, **k: pytest.fail("selection read the test split")))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        split = few_shot_split(load_dataset(small), progress=False)
    prof = _profile()
    s = sel.select_settings(fit_data(split, size=64), prof, seed=0, methods=["croppaste"])
    assert opened and not set(opened) & _test_paths(small)  # only training files were read
    rec = s.record
    assert [(c["generator"], c["fusion"]) for c in rec["candidates"]] == \
        [(g, w) for g in ("croppaste", "logical", "mixture") for w in (0.0, 0.5, 1.0)]
    for c in rec["candidates"]:
        assert len(c["folds"]) == 2 and set(c["folds"][0]) == {"pixel_ap", "aupro", "image_auroc", "score"}
    best = max(rec["candidates"], key=lambda c: c["score"])
    assert rec["choice"]["generator"] == s.generator == best["generator"] and s.fusion == best["fusion"]
    # PatchCore alone (w = 1) scores the same whatever the generator
    pc = [c["score"] for c in rec["candidates"] if c["fusion"] == 1.0]
    assert max(pc) - min(pc) < 1e-9
    assert [r["cls_real_share"] for r in rec["classifier"]] == [0.5, 1.0] and s.cls_real_share in (0.5, 1.0)
    assert rec["budget"]["head_trainings"] == 3 * 2 and set(s.per_method) == {"croppaste", "logical", "mixture"}


def test_fixed_settings_are_kept(small):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        split = few_shot_split(load_dataset(small), progress=False)
    prof = _profile(fusion=0.3, cls_real_share=0.25)
    assert prof.extra["fixed"] and {"fusion", "cls_real_share"} <= set(prof.extra["fixed"])
    tiny = {**TINY, "generators": ["croppaste"]}
    prof = get_profile("auto", **SMOKE, fusion=0.3, cls_real_share=0.25, extra={"select": tiny})
    s = sel.select_settings(fit_data(split, size=64), prof, seed=0)
    assert [c["fusion"] for c in s.record["candidates"]] == [0.3] and s.record["classifier"] == []
    p = s.profile_for(prof, "croppaste")
    assert (p.fusion, p.cls_real_share) == (0.3, 0.25)
    with pytest.raises(ConfigError, match="selection has no setting"):
        sel.SelectionConfig.from_profile(get_profile("auto", extra={"select": {"foldz": 2}}))


def test_auto_benchmark_selects_before_reading_the_test_split(small, tmp_path, monkeypatch):
    events: list[str] = []
    real_select, real_load = sel.select_settings, evaluate.TestSet.load.__func__  # type: ignore[attr-defined]
    import anomalyforge.pipelines.benchmark as bench

    monkeypatch.setattr(bench, "select_settings", lambda *a, **k: (events.append("select"), real_select(*a, **k))[1])
    monkeypatch.setattr(evaluate.TestSet, "load",
                        classmethod(lambda cls, *a, **k: (events.append("test"), real_load(cls, *a, **k))[1]))
    prof = get_profile("auto", **SMOKE, extra={"select": {**TINY, "generators": ["croppaste"]}})
    res = run_benchmark(small, tmp_path / "b", ["auto", "patchcore"], profile=prof, progress=False)
    assert events == ["select", "test"]  # chosen first, the test split read once afterwards
    choice = res["selection"]["choice"]
    e = res["methods"]["auto"]
    assert e["selected"] == {"generator": choice["generator"], "fusion": choice["fusion"],
                             "cls_real_share": choice["cls_real_share"]}
    html = (tmp_path / "b" / "report.html").read_text(encoding="utf-8")
    assert "Selection on training folds" in html and f"generator <b>{choice['generator']}</b>" in html
    again = run_benchmark(small, tmp_path / "b", ["auto", "patchcore"], profile=prof, progress=False)
    assert again["selection"] == res["selection"] and events == ["select", "test"]  # resumed: no new choice
    with pytest.raises(ConfigError, match="needs --profile auto"):
        run_benchmark(small, tmp_path / "c", ["auto"], profile="smoke", progress=False)


def test_benchmark_chooses_the_input_size_from_training_masks_only(small, tmp_path, monkeypatch):
    import numpy as np

    import anomalyforge.pipelines.benchmark as bench
    from anomalyforge.data.io import read_mask

    seen: list = []
    real = bench.with_chosen_size
    monkeypatch.setattr(bench, "with_chosen_size", lambda prof, masks: real(prof, seen.extend(masks) or seen))
    # these few-shot defects are big (their smallest: 27 % of the image side): 4.3 px at 16, 12.9 at 48
    prof = get_profile("smoke", size_ladder=[16, 48, 64], quality=False)
    res = run_benchmark(small, tmp_path / "b", ["patchcore"], profile=prof, progress=False)
    train = [read_mask(small / "ground_truth" / t / f"00{i}_mask.png") for t in ("broken_large", "contamination")
             for i in (0, 1)]  # the lowest-numbered third of 6 per type: the training defects
    assert len(seen) == 4 and all(np.array_equal(a, b) for a, b in zip(seen, train, strict=True))
    assert res["config"]["size"] == res["size_choice"]["size"] == 48 and res["size_choice"]["ladder"] == [16, 48, 64]
    assert res["methods"]["patchcore"]["localization"]["pixel"]["auroc"] > 0.5
    html = (tmp_path / "b" / "report.html").read_text(encoding="utf-8")
    assert "Input size from the few-shot defects" in html and "Size <b>48</b> px" in html
    again = run_benchmark(small, tmp_path / "b", ["patchcore"], profile=prof, progress=False)
    assert again["size_choice"] == res["size_choice"]  # resumes: the same choice, the same identity


def test_train_chooses_the_input_size_as_the_benchmark_does(small, tmp_path):
    from anomalyforge.formats.model import ModelInfo
    from anomalyforge.pipelines.train import train_model

    prof = get_profile("smoke", size_ladder=[16, 48, 64], quality=False)
    info = train_model(small, tmp_path / "m", "croppaste", profile=prof, n=2, progress=False)
    assert info.config["size"] == 48 == ModelInfo.read(tmp_path / "m").config["size"]
