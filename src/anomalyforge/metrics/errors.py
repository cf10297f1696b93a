"""The one error every metric raises on degenerate or malformed input."""

from __future__ import annotations

from anomalyforge.errors import AnomalyForgeError


class MetricError(AnomalyForgeError, ValueError):
    """Input a metric cannot be computed on: no positives/negatives, NaN/inf, shape mismatch,
    non-binary labels.  Subclasses ValueError so generic callers can catch it too."""
