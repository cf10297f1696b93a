"""anomalib's detectors on the offline EfficientNet-Lite0: each trains and scores on a tiny real
bottle slice; seeded; STFPM's student is its own network; anomalib's PatchCore agrees with ours."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from anomalyforge.errors import ConfigError
from anomalyforge.inspect.anomalib_detectors import (
    DETECTORS,
    UNAVAILABLE,
    AnomalibDetector,
    DetectorConfig,
    check_detectors,
)
from anomalyforge.inspect.patchcore import PatchCore
from anomalyforge.metrics.ranking import auroc

TINY = DetectorConfig(size=64, epochs=1, batch_size=2)


@pytest.fixture(scope="module")
def tiny(bottle_fit64):
    """2 good training images, and 4 few-shot defect images with their masks, at 64 px."""
    good = np.stack([bottle_fit64.image(s) for s in bottle_fit64.good[:2]])
    defects = [s for v in bottle_fit64.defects.values() for s in v][:4]
    return good, np.stack([bottle_fit64.image(s) for s in defects]), np.stack([bottle_fit64.mask(s) > 0
                                                                                  for s in defects])


@pytest.fixture(scope="module")
def fitted(tiny):
    """Each detector fitted once on the 2 good images (1 epoch for the trained ones)."""
    cache: dict[str, AnomalibDetector] = {}

    def get(name: str) -> AnomalibDetector:
        if name not in cache:
            cache[name] = AnomalibDetector(name, TINY, seed=0).fit(tiny[0])
        return cache[name]

    return get


@pytest.mark.parametrize("name", DETECTORS)
def test_each_detector_trains_and_scores_a_tiny_real_slice(name, tiny, fitted):
    _, imgs, masks = tiny
    maps, scores = fitted(name).predict(imgs)
    assert maps.shape == masks.shape and maps.dtype == np.float32 and scores.shape == (len(imgs),)
    assert np.isfinite(maps).all() and np.isfinite(scores).all() and maps.std() > 0
    if name in ("patchcore", "padim"):  # fitted in one pass: real defects already stand out
        assert auroc(maps, masks) > 0.7


def test_a_trained_detector_is_seeded(tiny, fitted):
    """CFlow draws initial weights, batch order and fiber order: the same seed, the same model."""
    good, imgs, _ = tiny
    maps, _ = fitted("cflow").predict(imgs)
    again, _ = AnomalibDetector("cflow", TINY, seed=0).fit(good).predict(imgs)
    np.testing.assert_allclose(again, maps, rtol=1e-5, atol=1e-6)


def test_trained_models_update_their_own_parts_only(fitted):
    st = fitted("stfpm").module.model
    teacher = dict(st.teacher_model.named_parameters())
    student = dict(st.student_model.named_parameters())
    assert teacher.keys() == student.keys()
    assert all(p.data_ptr() != student[k].data_ptr() for k, p in teacher.items())  # two networks
    assert all(not p.requires_grad for p in teacher.values()) and all(p.requires_grad for p in student.values())
    # the teacher is the ImageNet backbone, the student started from random weights
    from anomalyforge.features.backbone import BackboneSpec, stage_network

    ref, _ = stage_network(BackboneSpec(levels=(1, 2, 3)))
    (k0, w0), (t0, tw0) = next(iter(ref.named_parameters())), next(iter(teacher.items()))
    assert t0.endswith(k0) and torch.equal(tw0, w0)
    assert not torch.equal(student[t0], w0)

    ff = fitted("fastflow").module.model
    assert all(not p.requires_grad for p in ff.feature_extractor.parameters())
    chans = [b.shape[1] for b in ff.feature_extractor(torch.zeros(1, 3, 64, 64))]
    assert chans == [24, 40, 112]  # the flow blocks are built for EfficientNet-Lite0, not ResNet-18


def test_bad_detector_names_are_one_line_errors():
    assert check_detectors(["PaDiM", " cflow", "padim"]) == ("padim", "cflow")
    with pytest.raises(ConfigError, match="unknown detector 'padim2'; choose from") as e:
        check_detectors(["padim2"])
    assert "\n" not in str(e.value)
    for name, why in UNAVAILABLE.items():
        with pytest.raises(ConfigError, match="not available offline") as e:
            AnomalibDetector(name)
        assert why in str(e.value)
    with pytest.raises(ConfigError, match="before fit"):
        AnomalibDetector("padim").predict(np.zeros((1, 64, 64, 3), np.uint8))
    with pytest.raises(ConfigError, match="out of range"):
        DetectorConfig(epochs=0)


def test_anomalib_patchcore_agrees_with_ours_on_the_same_backbone(bottle_fit64):
    """Same backbone levels, pooling, every patch kept, sigma-4 smoothing: the maps agree; the
    image score differs by design (anomalib reweights the max by its neighbours)."""
    fit = bottle_fit64
    good = np.stack([fit.image(s) for s in fit.good])
    defects = [s for v in fit.defects.values() for s in v]
    imgs = np.stack([fit.image(s) for s in defects])
    masks = np.stack([fit.mask(s) > 0 for s in defects])
    ours = PatchCore((2, 3), coreset=1.0, sigma=4.0, seed=0, max_bank=None, candidates=None).fit(good, progress=False)
    m_ours = ours.predict(imgs)
    theirs = AnomalibDetector("patchcore", DetectorConfig(size=64, coreset=1.0), seed=0).fit(good)
    m_theirs, _ = theirs.predict(imgs)
    assert len(theirs.module.model.memory_bank) == len(ours.bank) == 12 * 64
    r = np.corrcoef(m_ours.ravel(), m_theirs.ravel())[0, 1]
    assert r > 0.99
    assert abs(auroc(m_ours, masks) - auroc(m_theirs, masks)) < 0.01


def test_steps_fix_the_training_length_whatever_the_number_of_images(tiny):
    """With `steps`, one image and four images train on equally many batches (STFPM steps its
    optimiser once per batch); with `epochs`, the number of batches grows with the images."""
    good = tiny[0]
    four = np.concatenate([good, good])
    assert AnomalibDetector("stfpm", TINY, seed=0).fit(four).module.global_step == 2  # 1 epoch of 2 batches
    for imgs in (good[:1], four):
        det = AnomalibDetector("stfpm", replace(TINY, steps=4), seed=0).fit(imgs)
        assert det.module.global_step == 4
    with pytest.raises(ConfigError, match="out of range"):
        DetectorConfig(steps=0)
