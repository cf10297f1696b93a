"""Which classifier a model delivers (`inspect.classifier_choice`), on real bottle defects at 64 px."""

import numpy as np
import pytest

from anomalyforge.errors import ConfigError
from anomalyforge.inspect.classifier_choice import choose_classifier
from anomalyforge.inspect.classify import DefectClassifier, train_classifier
from anomalyforge.inspect.kfold import FoldMaps, assign_folds, donor_key
from anomalyforge.inspect.pairs import GeneratedPairs
from anomalyforge.inspect.profiles import get_profile
from anomalyforge.inspect.region_classify import RegionDefectClassifier


@pytest.fixture(scope="module")
def image_cls(bottle_pairs64) -> DefectClassifier:
    return train_classifier(bottle_pairs64, get_profile("smoke"), seed=0, progress=False)


def _perfect_folds(fit) -> FoldMaps:
    """k-fold 'maps' of a perfect localiser: each defect's own mask."""
    dealt = [(t, s, g) for f in range(3) for t, s, g in assign_folds(fit, 3) if g == f]
    masks = np.stack([fit.mask(s) > 0 for _, s, _ in dealt])
    return FoldMaps(masks.astype(np.float32), masks, [], 0, np.stack([fit.image(s) for _, s, _ in dealt]),
                    [t for t, _, _ in dealt], [donor_key(s.image) for _, s, _ in dealt], [g for _, _, g in dealt])


def test_image_keeps_the_whole_image_classifier(bottle_fit64, bottle_pairs64, image_cls):
    prof = get_profile("smoke", cls_input="image")
    cls, choice = choose_classifier(_perfect_folds(bottle_fit64), bottle_pairs64,
                                    GeneratedPairs.from_fit_data(bottle_fit64), image_cls, prof, 0, "imagenet")
    assert cls is image_cls and choice.chosen == "image" and choice.record["rule"] == "fixed"


def test_without_fold_maps_choose_falls_back_and_region_is_refused(bottle_fit64, bottle_pairs64, image_cls):
    real = GeneratedPairs.from_fit_data(bottle_fit64)
    cls, choice = choose_classifier(None, bottle_pairs64, real, image_cls, get_profile("smoke", cls_input="choose"),
                                    0, "imagenet")
    assert cls is image_cls and choice.chosen == "image" and "no k-fold maps" in choice.record["rule"]
    with pytest.raises(ConfigError, match="cls_input=region needs k-fold maps"):
        choose_classifier(None, bottle_pairs64, real, image_cls, get_profile("smoke", cls_input="region"), 0,
                          "imagenet")


def test_choose_scores_both_on_the_folds_and_keeps_the_better(bottle_fit64, bottle_pairs64, image_cls):
    """Both arms are scored on the same 22 real defects in 3 folds; with a perfect localiser's
    regions the region arm types them far above chance (3 types), and the choice is the better
    pooled accuracy (a tie keeps the whole-image one)."""
    folds = _perfect_folds(bottle_fit64)
    prof = get_profile("smoke", cls_input="choose")
    cls, choice = choose_classifier(folds, bottle_pairs64, GeneratedPairs.from_fit_data(bottle_fit64), image_cls,
                                    prof, 0, "imagenet")
    rec = choice.record
    print(rec["accuracy"], rec["per_fold"])
    assert rec["n_defects"] == 22 and rec["k"] == 3
    assert all(len(v) == 3 for v in rec["per_fold"].values())
    acc = rec["accuracy"]
    assert acc["region"] >= 0.5  # 0.59 measured; chance is about 0.33
    assert choice.chosen == ("region" if acc["region"] > acc["image"] else "image")
    assert isinstance(cls, RegionDefectClassifier if choice.chosen == "region" else DefectClassifier)
    assert cls.labels == image_cls.labels
