"""Generation-quality metrics on plain arrays: Inception Score and intra-cluster LPIPS.

The papers (AnomalyDiffusion, GAA, DualAnoDiff) report both per defect type: IS for how
confidently an ImageNet classifier recognises the images (quality), IC-LPIPS (Ojha et al. 2021)
for how different the generated images are from each other *around each real example* (diversity;
a generator that copies its few-shot images scores 0). The models that produce the class
probabilities and perceptual distances live in `anomalyforge.quality.generation`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from anomalyforge.metrics.errors import MetricError


def inception_score(probs: np.ndarray, splits: int = 10, min_split: int = 50) -> tuple[float, float]:
    """IS = exp(E_x KL(p(y|x) || p(y))), mean and standard deviation over `splits` consecutive
    chunks (the convention of Salimans et al. and torch-fidelity).

    `probs` is (N, C) class probabilities, rows summing to 1. IS grows with the chunk size, so
    `splits` is lowered until every chunk holds at least `min_split` images (one chunk when
    N < 2 * min_split): small sets are then comparable with large ones. Ranges from 1 (every
    image gets the same distribution) to min(C, chunk size).
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] < 2 or p.shape[1] < 2:
        raise MetricError(f"inception_score needs (N >= 2, C >= 2) probabilities, got shape {p.shape}")
    if not np.isfinite(p).all() or (p < 0).any() or not np.allclose(p.sum(1), 1.0, atol=1e-3):
        raise MetricError("inception_score: rows must be finite probabilities summing to 1")
    if splits < 1 or min_split < 1:
        raise MetricError(f"splits and min_split must be >= 1, got {splits}, {min_split}")
    k = max(1, min(int(splits), p.shape[0] // int(min_split)))
    eps = 1e-12
    scores = []
    for chunk in np.array_split(p, k):
        marginal = chunk.mean(0, keepdims=True)
        kl = (chunk * (np.log(chunk + eps) - np.log(marginal + eps))).sum(1)
        scores.append(float(np.exp(kl.mean())))
    return float(np.mean(scores)), float(np.std(scores))


def nearest_reference(dist_to_refs: np.ndarray) -> np.ndarray:
    """Cluster label of each generated image: the index of its nearest reference (first on ties).

    `dist_to_refs` is (N generated, K references)."""
    d = np.asarray(dist_to_refs, dtype=np.float64)
    if d.ndim != 2 or d.shape[1] == 0:
        raise MetricError(f"distances must be (N, K>0), got shape {d.shape}")
    if not np.isfinite(d).all():
        raise MetricError("distances contain NaN or inf")
    return d.argmin(1)


def intra_cluster_distance(cluster_matrices: Sequence[np.ndarray]) -> float:
    """IC-LPIPS from each cluster's pairwise distance matrix: the mean of a cluster's distinct
    pairs (upper triangle), averaged over the clusters that hold at least two images."""
    means = []
    for m in cluster_matrices:
        m = np.asarray(m, dtype=np.float64)
        if m.ndim != 2 or m.shape[0] != m.shape[1]:
            raise MetricError(f"a cluster's distance matrix must be square, got shape {m.shape}")
        if m.shape[0] < 2:
            continue
        iu = np.triu_indices(m.shape[0], k=1)
        vals = m[iu]
        if not np.isfinite(vals).all():
            raise MetricError("distances contain NaN or inf")
        means.append(vals.mean())
    if not means:
        raise MetricError("IC-LPIPS needs a cluster with at least two images")
    return float(np.mean(means))
