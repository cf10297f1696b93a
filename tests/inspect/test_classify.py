import numpy as np
import pytest
import torch

from anomalyforge.errors import ConfigError
from anomalyforge.inspect import classify
from anomalyforge.inspect.classify import train_classifier
from anomalyforge.inspect.pairs import GeneratedPairs
from anomalyforge.inspect.profiles import get_profile


def _hits(pred, true) -> int:
    assert len(pred) == len(true)
    return sum(p == t for p, t in zip(pred, true, strict=True))


@pytest.mark.parametrize("finetune_from", [4, 0])
def test_classifier_trains_deterministically_over_the_pair_types(bottle_pairs64, finetune_from):
    prof = get_profile("smoke", cls_finetune_from=finetune_from)
    a = train_classifier(bottle_pairs64, prof, seed=0, progress=False)
    assert a.labels == sorted(set(bottle_pairs64.types))
    pred = a.predict(bottle_pairs64.images)
    assert len(pred) == len(bottle_pairs64) and set(pred) <= set(a.labels)
    b = train_classifier(bottle_pairs64, prof, seed=0, progress=False)
    assert b.predict(bottle_pairs64.images) == pred


def test_classifier_tells_the_pair_types_apart_on_held_out_pairs(bottle_fit64, bottle_pairs64):
    """Not a constant predictor: on 48 held-out pairs (the few-shot defects pasted onto other good
    images, other flips) it predicts more than one type and beats the majority-class rate (16)."""
    from inspectdata import croppaste

    prof = get_profile("smoke", cls_finetune_from=4, cls_steps=30, cls_lr=1e-3)
    clf = train_classifier(bottle_pairs64, prof, seed=0, progress=False)
    held = croppaste(bottle_fit64, 8, seed=99) + croppaste(bottle_fit64, 8, seed=7)
    pred = clf.predict(held.images)
    majority = max(held.counts().values())
    assert len(set(pred)) > 1
    assert _hits(pred, held.types) >= majority + 5  # 26 measured at 1 thread


def test_classifier_learns_separable_types():
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 40, (24, 64, 64, 3), dtype=np.uint8)
    imgs[12:, :, :, 0] = 220  # second type: red images
    masks = np.zeros((24, 64, 64), np.uint8)
    pairs = GeneratedPairs(imgs, masks, ["dark"] * 12 + ["red"] * 12)
    clf = train_classifier(pairs, get_profile("smoke", cls_steps=15, cls_lr=1e-3), seed=0, progress=False)
    # 15 steps: all 24 right on most machines; a margin for float rounding, far above chance (12)
    assert _hits(clf.predict(imgs), pairs.types) >= 21


def test_one_type_is_config_error(bottle_pairs64):
    one = GeneratedPairs(bottle_pairs64.images[:2], bottle_pairs64.masks[:2], ["a", "a"])
    with pytest.raises(ConfigError, match="at least two defect types"):
        train_classifier(one, get_profile("smoke"), progress=False)


def test_real_few_shot_pairs_and_joining(bottle_fit64, bottle_pairs64):
    real = GeneratedPairs.from_fit_data(bottle_fit64)
    assert real.counts() == {"broken_large": 7, "broken_small": 8, "contamination": 7}  # the few-shot split
    first = bottle_fit64.defects["broken_large"][0]
    assert np.array_equal(real.images[0], bottle_fit64.image(first))
    assert np.array_equal(real.masks[0], bottle_fit64.mask(first))
    both = bottle_pairs64 + real
    assert len(both) == len(bottle_pairs64) + 22 and both.types[-22:] == real.types
    assert np.array_equal(both.images[-22:], real.images)
    with pytest.raises(ConfigError, match="cannot join pairs of size"):
        _ = both + GeneratedPairs(real.images[:, :32, :32], real.masks[:, :32, :32], real.types)


def test_real_share_decides_which_pairs_teach_the_classifier():
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 40, (24, 64, 64, 3), dtype=np.uint8)
    imgs[12:, :, :, 0] = 220  # red images
    masks = np.zeros((24, 64, 64), np.uint8)
    real = GeneratedPairs(imgs, masks, ["dark"] * 12 + ["red"] * 12)
    swapped = GeneratedPairs(imgs, masks, ["red"] * 12 + ["dark"] * 12)  # generated pairs that lie
    prof = get_profile("smoke", cls_steps=15, cls_lr=1e-3)
    only_real = train_classifier(swapped, prof, seed=0, progress=False, real=real, real_share=1.0)
    assert _hits(only_real.predict(imgs), real.types) >= 21  # the real labels (swapped ones would give ~0)
    only_generated = train_classifier(swapped, prof, seed=0, progress=False, real=real, real_share=0.0)
    assert _hits(only_generated.predict(imgs), swapped.types) >= 21
    with pytest.raises(ConfigError, match="real_share must be in"):
        train_classifier(swapped, prof, progress=False, real=real, real_share=1.5)


def test_a_cached_trunk_is_reused_to_the_same_classifier(bottle_pairs64):
    """Retraining on a subset with the rows of an earlier classifier's cached trunk features gives
    the classifier that computing them again gives; a cache of other images is refused."""
    prof = get_profile("smoke", cls_finetune_from=4)
    full = train_classifier(bottle_pairs64, prof, seed=0, progress=False)
    assert full.trunk is not None and len(full.trunk) == len(bottle_pairs64)
    keep = list(range(0, len(bottle_pairs64), 2))
    sub = bottle_pairs64.subset(keep)
    fresh = train_classifier(sub, prof, seed=1, progress=False)
    reused = train_classifier(sub, prof, seed=1, progress=False, trunk=full.trunk[keep])
    assert fresh.trunk is not None and reused.trunk is not None
    rows, again = full.trunk[keep].float(), fresh.trunk.float()
    # the same features, up to fp16 and to the convolutions' rounding at another batch composition
    assert float((rows - again).abs().max()) <= 1e-2 * float(again.abs().max())
    assert torch.equal(reused.trunk, full.trunk[keep])  # the rows given, not recomputed
    a, b = fresh.predict_proba(bottle_pairs64.images), reused.predict_proba(bottle_pairs64.images)
    assert np.abs(a - b).mean() <= 0.02  # training amplifies that rounding a little, no more
    with pytest.raises(ConfigError, match="cached trunk features"):
        train_classifier(sub, prof, seed=1, progress=False, trunk=full.trunk)


def test_the_fine_tuned_blocks_train_channels_last_and_are_delivered_in_the_standard_layout(bottle_pairs64,
                                                                                            monkeypatch):
    prof = get_profile("smoke", cls_finetune_from=4)
    seen: list[bool] = []
    real_from_trunk = classify._StageClassifier.from_trunk

    def spy(self, h):
        if self.training:
            seen.append(h.is_contiguous(memory_format=torch.channels_last)
                        and all(p.is_contiguous(memory_format=torch.channels_last)
                                for p in self.top.parameters() if p.dim() == 4))
        return real_from_trunk(self, h)

    monkeypatch.setattr(classify._StageClassifier, "from_trunk", spy)
    clf = train_classifier(bottle_pairs64, prof, seed=0, progress=False)
    assert seen and all(seen) and len(seen) == prof.cls_steps
    weights = [p for p in clf.model.top.parameters() if p.dim() == 4]
    assert weights and all(p.is_contiguous() for p in weights)  # saved and exported as before
