"""Accuracy and exact ROC AUC against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medserve.metrics import accuracy, binary_roc_auc, roc_auc


def _two(p1: list[float]) -> np.ndarray:
    p = np.asarray(p1)
    return np.stack([1.0 - p, p], axis=1)


def test_auc_is_one_when_every_positive_outscores_every_negative() -> None:
    assert roc_auc(np.array([0, 0, 1, 1]), _two([0.1, 0.4, 0.6, 0.9])) == 1.0


def test_auc_is_zero_when_the_ranking_is_inverted() -> None:
    assert roc_auc(np.array([0, 0, 1, 1]), _two([0.9, 0.6, 0.4, 0.1])) == 0.0


def test_auc_counts_ties_as_one_half() -> None:
    assert roc_auc(np.array([0, 0, 1, 1]), _two([0.5, 0.5, 0.5, 0.5])) == 0.5
    # Pairs (pos, neg): (0.5, 0.2) win, (0.5, 0.5) tie, (0.8, 0.2) win, (0.8, 0.5) win.
    assert roc_auc(np.array([0, 1, 0, 1]), _two([0.2, 0.5, 0.5, 0.8])) == pytest.approx(3.5 / 4)


def test_auc_of_a_partial_ranking() -> None:
    # Positives 0.2 and 0.8 against negatives 0.1 and 0.7: 3 of 4 pairs won.
    assert roc_auc(np.array([0, 1, 0, 1]), _two([0.1, 0.2, 0.7, 0.8])) == 0.75


def test_auc_is_nan_when_only_one_class_is_present() -> None:
    assert math.isnan(binary_roc_auc(np.array([True, True]), np.array([0.1, 0.2])))


def test_multiclass_auc_is_the_macro_mean_of_one_vs_rest() -> None:
    labels = np.array([0, 1, 2, 2])
    probabilities = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8]])
    # class 0: 1.0; class 1: positive 0.8 vs 0.1, 0.7, 0.1 -> 1.0;
    # class 2: positives 0.1, 0.8 vs negatives 0.1, 0.1 -> (0.5 + 0.5 + 1 + 1) / 4 = 0.75.
    assert roc_auc(labels, probabilities) == pytest.approx((1.0 + 1.0 + 0.75) / 3)


def test_accuracy_is_the_fraction_of_correct_arg_max() -> None:
    assert accuracy(np.array([0, 1, 1]), _two([0.2, 0.9, 0.3])) == pytest.approx(2 / 3)
