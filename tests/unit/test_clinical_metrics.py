"""The card's validation metrics: operating point and bootstrap intervals."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medserve.clinical_metrics import (
    bootstrap_interval,
    sensitivity,
    specificity,
    validation_report,
)
from medserve.metrics import accuracy


def test_sensitivity_and_specificity_at_the_threshold_on_one_minus_p_first_label() -> None:
    labels = np.array([0, 0, 0, 1, 1, 2])
    probabilities = np.array(
        [
            [0.9, 0.1, 0.0],
            [0.4, 0.5, 0.1],
            [0.7, 0.2, 0.1],
            [0.2, 0.8, 0.0],
            [0.6, 0.3, 0.1],
            [0.1, 0.1, 0.8],
        ]
    )
    # Findings (labels 1, 2): scores 0.8, 0.4, 0.9 -> 2 of 3 called positive.
    assert sensitivity(labels, probabilities) == pytest.approx(2 / 3)
    # Negatives: scores 0.1, 0.6, 0.3 -> 2 of 3 called negative.
    assert specificity(labels, probabilities) == pytest.approx(2 / 3)
    assert math.isnan(sensitivity(np.zeros(3, dtype=int), probabilities[:3]))


def test_bootstrap_interval_brackets_the_value_and_narrows_with_more_data() -> None:
    rng = np.random.default_rng(0)

    def sample(rows: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.integers(0, 2, rows)
        right = rng.random(rows) < 0.8
        predicted = np.where(right, labels, 1 - labels)
        return labels, np.eye(2)[predicted] * 0.8 + 0.1

    small, large = sample(50), sample(2000)
    low_s, high_s = bootstrap_interval(accuracy, *small)
    low_l, high_l = bootstrap_interval(accuracy, *large)
    assert low_s <= accuracy(*small) <= high_s
    assert low_l <= accuracy(*large) <= high_l
    assert high_l - low_l < (high_s - low_s) / 3


def test_validation_report_records_the_operating_point_and_every_metric() -> None:
    labels = np.array([0, 0, 1, 1, 1, 0, 1, 0])
    probabilities = np.array(
        [
            [0.8, 0.2],
            [0.6, 0.4],
            [0.3, 0.7],
            [0.45, 0.55],
            [0.7, 0.3],
            [0.2, 0.8],
            [0.1, 0.9],
            [0.9, 0.1],
        ]
    )
    report = validation_report(labels, probabilities, label_names=("normal", "lesion"))
    assert report["threshold"] == 0.5 and report["negative_class"] == "normal"
    assert "1 - p(normal) >= 0.5" in report["operating_point"]
    assert report["class_counts"] == {"normal": 4, "lesion": 4}
    metrics = report["metrics"]
    assert set(metrics) == {"roc_auc", "accuracy", "sensitivity", "specificity"}
    assert metrics["sensitivity"]["value"] == pytest.approx(3 / 4)
    assert metrics["specificity"]["value"] == pytest.approx(3 / 4)
    for result in metrics.values():
        low, high = result["ci95"]
        assert 0.0 <= low <= result["value"] <= high <= 1.0
    again = validation_report(labels, probabilities, label_names=("normal", "lesion"))
    assert again == report  # seeded: the same data gives the same intervals
