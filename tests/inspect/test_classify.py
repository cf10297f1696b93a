import numpy as np
import pytest

from anomalyforge.errors import ConfigError
from anomalyforge.inspect.classify import train_classifier
from anomalyforge.inspect.pairs import GeneratedPairs
from anomalyforge.inspect.profiles import get_profile


@pytest.mark.parametrize("finetune_from", [4, 0])
def test_classifier_trains_deterministically_over_the_pair_types(bottle_pairs64, finetune_from):
    prof = get_profile("smoke", cls_finetune_from=finetune_from)
    a = train_classifier(bottle_pairs64, prof, seed=0, progress=False)
    assert a.labels == sorted(set(bottle_pairs64.types))
    pred = a.predict(bottle_pairs64.images)
    assert len(pred) == len(bottle_pairs64) and set(pred) <= set(a.labels)
    b = train_classifier(bottle_pairs64, prof, seed=0, progress=False)
    assert b.predict(bottle_pairs64.images) == pred


def test_classifier_learns_separable_types():
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 40, (24, 64, 64, 3), dtype=np.uint8)
    imgs[12:, :, :, 0] = 220  # second type: red images
    masks = np.zeros((24, 64, 64), np.uint8)
    pairs = GeneratedPairs(imgs, masks, ["dark"] * 12 + ["red"] * 12)
    clf = train_classifier(pairs, get_profile("smoke", cls_steps=15, cls_lr=1e-3), seed=0, progress=False)
    assert clf.predict(imgs) == pairs.types


def test_one_type_is_config_error(bottle_pairs64):
    one = GeneratedPairs(bottle_pairs64.images[:2], bottle_pairs64.masks[:2], ["a", "a"])
    with pytest.raises(ConfigError, match="at least two defect types"):
        train_classifier(one, get_profile("smoke"), progress=False)
