"""Validation metrics for the model card, each with a bootstrap 95 % interval.

Usage::

    report = validation_report(labels, probabilities, label_names=("normal", "lesion"))
    report["metrics"]["sensitivity"]   # {"value": 0.9, "ci95": [0.82, 0.97]}

The operating point: the first label is the negative ("normal") class and
every other label is a finding. A case is called positive when its
*abnormality score*, ``1 - p[first label]`` (for two classes: the probability
of the second), is at least :data:`OPERATING_THRESHOLD`. For two classes this
is the served top-1 decision. Sensitivity is the share of true findings called
positive, specificity the share of true negatives called negative. Accuracy
is top-1 over all classes; ROC AUC is that of :func:`medserve.metrics.roc_auc`.

Intervals are percentile bootstrap intervals: :data:`BOOTSTRAP_RESAMPLES`
resamples of the rows with replacement (seeded, so a report is reproducible);
resamples in which a metric is undefined (one class absent) are left out of
that metric's interval.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from medserve.metrics import accuracy, binary_roc_auc, roc_auc

OPERATING_THRESHOLD = 0.5
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 20261128
CONFIDENCE = 0.95

Metric = Callable[[np.ndarray, np.ndarray], float]


def abnormality_score(probabilities: np.ndarray) -> np.ndarray:
    """``1 - p[0]``: the probability of any finding (any label but the first)."""
    return 1.0 - np.asarray(probabilities, dtype=np.float64)[:, 0]


def sensitivity(
    labels: np.ndarray, probabilities: np.ndarray, threshold: float = OPERATING_THRESHOLD
) -> float:
    """Share of rows with a finding (label > 0) whose abnormality score is >= ``threshold``."""
    positive = np.asarray(labels) > 0
    if not positive.any():
        return math.nan
    return float(np.mean(abnormality_score(probabilities)[positive] >= threshold))


def specificity(
    labels: np.ndarray, probabilities: np.ndarray, threshold: float = OPERATING_THRESHOLD
) -> float:
    """Share of negative rows (label 0) whose abnormality score is below ``threshold``."""
    negative = np.asarray(labels) == 0
    if not negative.any():
        return math.nan
    return float(np.mean(abnormality_score(probabilities)[negative] < threshold))


def bootstrap_interval(
    metric: Metric,
    labels: np.ndarray,
    probabilities: np.ndarray,
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float]:
    """Percentile bootstrap interval (:data:`CONFIDENCE`) of ``metric``; NaNs if undefined."""
    labels = np.asarray(labels)
    probabilities = np.asarray(probabilities)
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, len(labels), size=(resamples, len(labels)))
    values = np.array([metric(labels[r], probabilities[r]) for r in rows])
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return (math.nan, math.nan)
    tail = (1.0 - CONFIDENCE) / 2.0 * 100.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return (float(low), float(high))


def validation_report(
    labels: np.ndarray,
    probabilities: np.ndarray,
    *,
    label_names: Sequence[str],
    threshold: float = OPERATING_THRESHOLD,
) -> dict[str, Any]:
    """Every card metric with its point value and bootstrap interval, as JSON values.

    Args:
        labels: Class index per row.
        probabilities: The served (calibrated) probabilities of those rows.
        label_names: Class names; the first is the negative class.
        threshold: Operating threshold on the abnormality score.
    """
    labels = np.asarray(labels)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    metrics: dict[str, Metric] = {
        "roc_auc": roc_auc,
        "accuracy": accuracy,
        "sensitivity": lambda y, p: sensitivity(y, p, threshold),
        "specificity": lambda y, p: specificity(y, p, threshold),
    }
    if len(label_names) > 2:
        # Detection of "any finding", the quantity the threshold acts on.
        metrics["roc_auc_any_finding"] = lambda y, p: binary_roc_auc(y > 0, abnormality_score(p))
    results = {}
    for name, metric in metrics.items():
        low, high = bootstrap_interval(metric, labels, probabilities)
        results[name] = {"value": metric(labels, probabilities), "ci95": [low, high]}
    return {
        "samples": len(labels),
        "class_counts": {n: int(np.sum(labels == i)) for i, n in enumerate(label_names)},
        "negative_class": label_names[0],
        "operating_point": (
            f"positive when 1 - p({label_names[0]}) >= {threshold:g} "
            "on the served (calibrated) probabilities"
        ),
        "threshold": threshold,
        "bootstrap": {
            "resamples": BOOTSTRAP_RESAMPLES,
            "seed": BOOTSTRAP_SEED,
            "confidence": CONFIDENCE,
            "method": "percentile",
        },
        "metrics": results,
    }
