"""AUROC / AP / F1-max / curves agree with scikit-learn, including tie-heavy scores."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import (
    average_precision_score,
    precision_recall_curve,
    roc_auc_score,
)
from sklearn.metrics import roc_curve as sk_roc_curve

from anomalyforge.errors import AnomalyForgeError
from anomalyforge.metrics import MetricError, auroc, average_precision, binned_error_bound, f1_max, pr_curve, roc_curve


def _data(seed: int, n: int, levels: int | None, dtype=np.float64):
    """Scores correlated with labels; ``levels`` quantises them into few values (many ties)."""
    rng = np.random.default_rng(seed)
    s = rng.random(n)
    y = rng.random(n) < 0.1 + 0.6 * s
    if levels is not None:
        s = np.floor(s * levels) / levels
    return s.astype(dtype), y


def _sk_f1_max(s, y) -> float:
    p, r, _ = precision_recall_curve(y, s)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(p + r > 0, 2 * p * r / (p + r), 0.0)
    return float(f1.max())


CASES = [(0, 2000, None), (1, 3000, 3), (2, 3000, 17), (3, 500, 2), (4, 5000, 200), (5, 7, None)]


@pytest.mark.parametrize("seed,n,levels", CASES)
def test_agrees_with_sklearn(seed, n, levels):
    s, y = _data(seed, n, levels)
    assert auroc(s, y) == pytest.approx(roc_auc_score(y, s), abs=1e-6)
    assert average_precision(s, y) == pytest.approx(average_precision_score(y, s), abs=1e-6)
    f1, thr = f1_max(s, y)
    assert f1 == pytest.approx(_sk_f1_max(s, y), abs=1e-6)
    # the returned threshold really attains that F1 (predict positive when score >= thr)
    pred = s >= thr
    tp = np.sum(pred & y)
    assert 2 * tp / (pred.sum() + y.sum()) == pytest.approx(f1, abs=1e-12)


def test_any_shape_dtype_and_label_encoding():
    s, y = _data(7, 4096, 9, dtype=np.float32)
    ref = roc_auc_score(y, s)
    s_img, y_img = s.reshape(4, 32, 32), y.reshape(4, 32, 32)
    assert auroc(s_img, y_img) == pytest.approx(ref, abs=1e-6)
    assert auroc(s_img, y_img.astype(np.uint8) * 255) == pytest.approx(ref, abs=1e-6)
    assert auroc(s_img, y_img.astype(float)) == pytest.approx(ref, abs=1e-6)
    ints = np.round(s * 9).astype(np.int64)  # integer scores are fine too
    assert auroc(ints, y) == pytest.approx(roc_auc_score(y, ints), abs=1e-6)


def test_perfect_and_inverted_ranking():
    y = np.array([0, 0, 1, 1, 0, 1], bool)
    s = y.astype(float) + 0.1
    assert auroc(s, y) == 1.0 and average_precision(s, y) == 1.0
    assert f1_max(s, y) == (1.0, 1.1)
    assert auroc(-s, y) == 0.0
    assert auroc(np.zeros(6), y) == 0.5  # all tied


def test_f1_max_takes_the_highest_threshold_among_equal_f1():
    # F1 = 2/3 at threshold 4 (1 TP) and again at threshold 1 (2 TP, 2 FP): the documented tie
    # rule picks 4, the stricter threshold
    f1, thr = f1_max(np.array([4.0, 3.0, 2.0, 1.0]), np.array([1, 0, 0, 1]))
    assert f1 == pytest.approx(2 / 3) and thr == 4.0
    # and the threshold is one that attains the best F1 when applied (score >= thr is positive)
    rng = np.random.default_rng(5)
    s, y = rng.integers(0, 6, 300).astype(float), rng.random(300) < 0.3
    f1, thr = f1_max(s, y)
    pred = s >= thr
    assert f1 == pytest.approx(2 * (pred & y).sum() / (pred.sum() + y.sum()))


def test_binned_auroc_within_documented_bound():
    s, y = _data(11, 20000, None)
    s = s**3  # skewed, so some bins are crowded
    bins = 64
    exact, binned = auroc(s, y), auroc(s, y, bins=bins)
    # independent quantisation for the bound: equal-width bins over [min, max]
    edges = np.linspace(s.min(), s.max(), bins + 1)
    b = np.clip(np.searchsorted(edges, s, side="right") - 1, 0, bins - 1)
    p_b = np.bincount(b[y], minlength=bins)
    n_b = np.bincount(b[~y], minlength=bins)
    bound = 0.5 * np.sum(p_b * n_b) / (y.sum() * (~y).sum())
    assert binned != exact  # the test must exercise the approximation
    assert abs(binned - exact) <= bound + 1e-12
    assert abs(average_precision(s, y, bins=4096) - average_precision(s, y)) < 2e-3
    f1b, thr = f1_max(s, y, bins=bins)
    assert f1b <= f1_max(s, y)[0] + 1e-12
    pred = s >= thr  # the binned threshold is a real score attaining f1b exactly
    assert 2 * np.sum(pred & y) / (pred.sum() + y.sum()) == pytest.approx(f1b, abs=1e-12)


@pytest.mark.parametrize("bins", [4, 32, 512])
@pytest.mark.parametrize("seed,power,levels", [(0, 1, None), (1, 4, None), (2, 1, 300)])
def test_binned_errors_stay_within_reported_bounds(seed, power, levels, bins):
    s, y = _data(seed, 20000, levels)
    s = s**power
    bound = binned_error_bound(s, y, bins)
    assert abs(auroc(s, y, bins=bins) - auroc(s, y)) <= bound["auroc"] + 1e-12
    ap_err = abs(average_precision(s, y, bins=bins) - average_precision(s, y))
    assert ap_err <= bound["average_precision"] + 1e-12
    if bins == 4:
        assert ap_err > 0  # the approximation is really exercised
    if bins == 512 and power == 1:
        assert bound["auroc"] < 2e-3 and bound["average_precision"] < 2e-2


def test_binned_is_exact_when_every_score_has_its_own_bin():
    rng = np.random.default_rng(3)
    s = rng.integers(0, 10, 3000).astype(float)
    y = rng.random(3000) < 0.05 * (1 + s)
    for fn in (auroc, average_precision):
        assert fn(s, y, bins=10) == pytest.approx(fn(s, y), abs=1e-12)
    assert f1_max(s, y, bins=10) == pytest.approx(f1_max(s, y), abs=1e-12)
    assert binned_error_bound(s, y, 10) == {"auroc": 0.0, "average_precision": 0.0}


def test_roc_curve_downsampled_points_lie_on_exact_curve():
    s, y = _data(5, 20000, None)
    curve = roc_curve(s, y, max_points=200)
    assert 2 <= curve.fpr.size <= 200
    assert (curve.fpr[0], curve.tpr[0], curve.fpr[-1], curve.tpr[-1]) == (0, 0, 1, 1)
    assert np.all(np.diff(curve.fpr) >= 0) and np.all(np.diff(curve.tpr) >= 0)
    fpr, tpr, thr = sk_roc_curve(y, s, drop_intermediate=False)
    exact = {(a, b): t for a, b, t in zip(np.round(fpr, 12), np.round(tpr, 12), thr, strict=False)}
    for a, b, t in zip(curve.fpr[1:], curve.tpr[1:], curve.thresholds[1:], strict=False):
        assert exact[(round(a, 12), round(b, 12))] == t
    full = roc_curve(s, y, max_points=10**6)
    assert np.trapezoid(full.tpr, full.fpr) == pytest.approx(roc_auc_score(y, s), abs=1e-9)


def test_pr_curve_matches_sklearn_points():
    s, y = _data(8, 3000, 40)
    curve = pr_curve(s, y, max_points=10**6)
    p, r, t = precision_recall_curve(y, s)
    # sklearn: increasing thresholds plus a final (precision 1, recall 0) point
    np.testing.assert_allclose(curve.precision, p[:-1][::-1], atol=1e-12)
    np.testing.assert_allclose(curve.recall, r[:-1][::-1], atol=1e-12)
    np.testing.assert_array_equal(curve.thresholds, t[::-1])
    small = pr_curve(s, y, max_points=10)
    assert small.recall.size <= 10 and small.recall[-1] == 1.0


BAD = [
    (np.ones(5), np.zeros(5, bool), "no positives"),
    (np.ones(5), np.ones(5, bool), "no negatives"),
    (np.array([0.1, np.nan, 0.3]), np.array([0, 1, 1]), "NaN/inf"),
    (np.array([0.1, np.inf, 0.3]), np.array([0, 1, 1]), "NaN/inf"),
    (np.ones(5), np.array([0, 1, 0, 1]), "shape mismatch"),
    (np.ones((2, 3)), np.array([0, 1, 0, 1, 0, 1]), "shape mismatch"),
    (np.ones(4), np.array([0, 1, 2, 1]), "binary"),
    (np.ones(4), np.array([0, 0.5, 1, 1]), "binary"),
    (np.array(["a", "b"]), np.array([0, 1]), "numeric"),
    (np.array([]), np.array([]), "empty"),
    (np.array([1 + 1j, 2]), np.array([0, 1]), "complex"),
]


@pytest.mark.parametrize("scores,labels,words", BAD)
@pytest.mark.parametrize("fn", [auroc, average_precision, f1_max, roc_curve, pr_curve])
def test_degenerate_input_raises_clear_error(fn, scores, labels, words):
    with pytest.raises(MetricError, match=words) as info:
        fn(scores, labels)
    assert isinstance(info.value, ValueError) and isinstance(info.value, AnomalyForgeError)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("bins", [0, 1, 2.5, True, "64"])
def test_bad_bins_and_max_points(bins):
    s, y = _data(1, 50, None)
    with pytest.raises(MetricError, match="bins"):
        auroc(s, y, bins=bins)
    with pytest.raises(MetricError, match="bins"):
        binned_error_bound(s, y, bins=None if bins == 0 else bins)
    with pytest.raises(MetricError, match="max_points"):
        roc_curve(s, y, max_points=1)
