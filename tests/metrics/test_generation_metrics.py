"""Inception Score and IC-LPIPS aggregation on hand-made inputs with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from anomalyforge.metrics import MetricError
from anomalyforge.metrics.generation import inception_score, intra_cluster_distance, nearest_reference


def test_is_is_one_when_every_image_gets_the_same_distribution():
    p = np.tile(np.array([0.7, 0.2, 0.1]), (40, 1))
    assert inception_score(p, splits=1) == pytest.approx((1.0, 0.0))


def test_is_equals_the_number_of_confidently_recognised_classes():
    # 8 images, each one-hot on its own class: KL(p(y|x) || uniform over 8) = log 8
    p = np.eye(8)
    assert inception_score(p, splits=1)[0] == pytest.approx(8.0, rel=1e-6)
    # two classes, half the images each -> 2
    q = np.repeat(np.eye(2), 50, axis=0)
    assert inception_score(q, splits=1)[0] == pytest.approx(2.0, rel=1e-6)


def test_is_matches_the_definition_on_random_probabilities():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(300, 5))
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    chunks = np.array_split(p, 3)
    want = [np.exp(np.mean([np.sum(r * np.log(r / c.mean(0))) for r in c])) for c in chunks]
    got = inception_score(p, splits=3, min_split=50)
    assert got == pytest.approx((np.mean(want), np.std(want)))


def test_is_lowers_splits_so_chunks_hold_min_split_images():
    rng = np.random.default_rng(1)
    p = rng.dirichlet(np.ones(4), size=120)
    # 120 images with min_split 50 -> 2 chunks of 60, whatever `splits` asks for
    assert inception_score(p, splits=10, min_split=50) == inception_score(p, splits=2, min_split=1)
    assert inception_score(p[:60], splits=10)[1] == 0.0  # one chunk


@pytest.mark.parametrize("bad", [np.ones((1, 3)) / 3, np.ones((5,)), np.full((4, 3), 0.5),
                                 np.array([[1.0, 0.0], [np.nan, 1.0]])])
def test_is_rejects_malformed_probabilities(bad):
    with pytest.raises(MetricError):
        inception_score(bad)


def test_nearest_reference_picks_the_smallest_distance_first_on_ties():
    d = np.array([[0.3, 0.1, 0.5], [0.2, 0.2, 0.9], [1.0, 0.8, 0.0]])
    assert nearest_reference(d).tolist() == [1, 0, 2]
    with pytest.raises(MetricError):
        nearest_reference(np.zeros((3, 0)))


def test_intra_cluster_distance_averages_pairs_then_clusters_and_skips_singletons():
    a = np.array([[0, 1, 2], [1, 0, 3], [2, 3, 0]], float)  # pairs 1, 2, 3 -> 2
    b = np.array([[0, 0.5], [0.5, 0]])  # -> 0.5
    single = np.zeros((1, 1))
    assert intra_cluster_distance([a, b, single]) == pytest.approx(1.25)
    with pytest.raises(MetricError):
        intra_cluster_distance([single])
    with pytest.raises(MetricError):
        intra_cluster_distance([np.zeros((2, 3))])
