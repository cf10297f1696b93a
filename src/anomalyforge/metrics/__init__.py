"""anomalyforge.metrics — detection and segmentation metrics on plain numpy arrays.

Ranking metrics (exact, scikit-learn definitions, optional O(n) ``bins=`` mode), the MVTec
AUPRO, class accuracies and the image score used by the benchmark.  Degenerate input raises
:class:`MetricError` (a ``ValueError`` and an ``AnomalyForgeError``).
"""

from anomalyforge.metrics.classes import accuracy, per_class_accuracy
from anomalyforge.metrics.errors import MetricError
from anomalyforge.metrics.pooling import default_pool, image_scores_from_maps
from anomalyforge.metrics.pro import ProCurve, aupro, aupro_binned_error_bound, pro_curve
from anomalyforge.metrics.ranking import (
    PrCurve,
    RocCurve,
    auroc,
    average_precision,
    binned_error_bound,
    f1_max,
    pr_curve,
    roc_curve,
)

__all__ = [
    "MetricError",
    "PrCurve",
    "ProCurve",
    "RocCurve",
    "accuracy",
    "aupro",
    "aupro_binned_error_bound",
    "auroc",
    "average_precision",
    "binned_error_bound",
    "default_pool",
    "f1_max",
    "image_scores_from_maps",
    "per_class_accuracy",
    "pr_curve",
    "pro_curve",
    "roc_curve",
]
