"""Validation metrics computed exactly with numpy: accuracy and ROC AUC.

Usage::

    roc_auc(np.array([0, 1, 1]), np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]))  # 1.0
    accuracy(labels, probabilities)

The AUC is the Mann-Whitney statistic: the probability that a random positive
scores above a random negative, ties counting one half. It is computed from
average ranks, so it is exact (no threshold grid) and needs no scikit-learn.
"""

from __future__ import annotations

import math

import numpy as np


def accuracy(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Fraction of rows whose arg-max class equals the label."""
    labels = np.asarray(labels)
    if len(labels) == 0:
        return math.nan
    return float(np.mean(np.argmax(probabilities, axis=1) == labels))


def binary_roc_auc(is_positive: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC of ``scores`` for a boolean ``is_positive``; NaN if one side is empty."""
    is_positive = np.asarray(is_positive, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    positives = int(is_positive.sum())
    negatives = len(is_positive) - positives
    if positives == 0 or negatives == 0:
        return math.nan
    ranks = _average_ranks(scores)
    rank_sum = float(ranks[is_positive].sum())
    return (rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives)


def roc_auc(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """ROC AUC of a classifier's probabilities.

    For two classes, the AUC of class 1 (the same number as for class 0, since
    their probabilities sum to one). For more, the unweighted mean of the
    one-vs-rest AUCs of the classes that have both positives and negatives.

    Args:
        labels: Class index per row.
        probabilities: ``(rows, classes)`` scores.

    Returns:
        The AUC in [0, 1], or NaN when no class has both positives and negatives.
    """
    labels = np.asarray(labels)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    classes = probabilities.shape[1]
    if classes == 2:
        return binary_roc_auc(labels == 1, probabilities[:, 1])
    aucs = [binary_roc_auc(labels == c, probabilities[:, c]) for c in range(classes)]
    defined = [a for a in aucs if not math.isnan(a)]
    return float(np.mean(defined)) if defined else math.nan


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, tied values sharing the mean of their ranks."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    # Start index of each run of equal values in the sorted order.
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], len(values)]
    run_ranks = (starts + ends + 1) / 2.0  # mean of ranks starts+1 .. ends
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.repeat(run_ranks, ends - starts)
    return ranks
