"""Accuracy and per-class accuracy agree with scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, recall_score

from anomalyforge.metrics import MetricError, accuracy, per_class_accuracy


def test_matches_sklearn_on_ints_and_strings():
    rng = np.random.default_rng(0)
    true = rng.integers(0, 4, 300)
    pred = np.where(rng.random(300) < 0.7, true, rng.integers(0, 5, 300))  # 4 only predicted
    assert accuracy(pred, true) == pytest.approx(accuracy_score(true, pred))
    per = per_class_accuracy(pred, true)
    assert list(per) == [0, 1, 2, 3] and all(type(k) is int for k in per)
    recalls = recall_score(true, pred, labels=[0, 1, 2, 3], average=None)
    np.testing.assert_allclose([per[k] for k in range(4)], recalls)
    names = np.array(["broken", "good", "scratch", "stain"])
    per_s = per_class_accuracy(names[pred % 4], names[true])
    assert set(per_s) == set(names) and all(type(k) is str for k in per_s)
    assert accuracy(names[true].reshape(30, 10), names[true].reshape(30, 10)) == 1.0


@pytest.mark.parametrize("pred,true", [([1, 2], [1, 2, 3]), ([], [])])
def test_bad_input(pred, true):
    for fn in (accuracy, per_class_accuracy):
        with pytest.raises(MetricError):
            fn(pred, true)
