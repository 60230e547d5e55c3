"""Temperature scaling: the numpy fit and metrics, and the graph layer that applies it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medserve.calibration import (
    brier_score,
    calibrate,
    expected_calibration_error,
    fit_temperature,
    reliability_bins,
    temperature_scale,
)
from medserve.errors import UsageError
from medserve.temperature import calibration_of, output_layer, with_temperature


def _softmax(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def _overconfident(rows: int, true_temperature: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from softmax(z / T_true) while the 'model' reports softmax(z)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 4.0, size=(rows, 3))
    truth = _softmax(logits / true_temperature)
    labels = np.array([rng.choice(3, p=row) for row in truth])
    return labels, _softmax(logits)


def test_fit_temperature_recovers_the_temperature_that_generated_the_labels() -> None:
    labels, probabilities = _overconfident(6000, 2.5, seed=0)
    assert fit_temperature(labels, probabilities) == pytest.approx(2.5, rel=0.08)


def test_calibrate_cuts_the_ece_of_an_overconfident_model_and_reports_before_and_after() -> None:
    labels, probabilities = _overconfident(3000, 2.0, seed=1)
    result = calibrate(labels, probabilities)
    assert result.applied and result.temperature > 1.5
    assert result.after["ece"] < result.before["ece"] / 2
    assert result.after["nll"] < result.before["nll"]
    assert result.after["brier"] < result.before["brier"]
    scaled = temperature_scale(probabilities, result.temperature)
    assert result.after["ece"] == pytest.approx(expected_calibration_error(labels, scaled))


def test_calibrate_keeps_t_1_and_says_so_when_the_fit_would_raise_the_ece() -> None:
    # Two groups whose confidence equals their accuracy exactly: ECE 0 and the
    # NLL's optimum at T = 1, so any fitted T (1 +- the search tolerance)
    # moves the confidences off their accuracy.
    labels = np.array([1] * 9 + [0] + [1] * 6 + [0] * 4)
    probabilities = np.array([[0.1, 0.9]] * 10 + [[0.4, 0.6]] * 10)
    result = calibrate(labels, probabilities)
    assert not result.applied
    assert result.temperature == 1.0
    assert result.fitted_temperature == pytest.approx(1.0, abs=1e-3)
    assert "T = 1 is kept" in result.note
    assert result.after == result.before


def test_calibrate_with_a_skip_reason_fits_nothing() -> None:
    labels, probabilities = _overconfident(200, 2.0, seed=2)
    result = calibrate(labels, probabilities, skip_reason="ends in a sigmoid")
    assert (result.temperature, result.applied, result.note) == (1.0, False, "ends in a sigmoid")


def test_ece_and_brier_match_a_hand_computed_example() -> None:
    labels = np.array([0, 1, 1, 0])
    probabilities = np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.55, 0.45]])
    # Top-1 confidences 0.8 (right), 0.7 (right), 0.6 (wrong), 0.55 (right):
    # bins (0.533, 0.6] -> {0.6, 0.55}: conf 0.575, acc 0.5; (0.667, 0.733] -> 0.7
    # right; (0.733, 0.8] -> 0.8 right.
    expected_ece = (2 * abs(0.5 - 0.575) + abs(1 - 0.7) + abs(1 - 0.8)) / 4
    assert expected_calibration_error(labels, probabilities) == pytest.approx(expected_ece)
    expected_brier = (2 * 0.2**2 + 2 * 0.3**2 + 2 * 0.6**2 + 2 * 0.45**2) / 4
    assert brier_score(labels, probabilities) == pytest.approx(expected_brier)
    bins = reliability_bins(labels, probabilities)
    assert len(bins) == 15 and sum(b["count"] for b in bins) == 4
    assert math.isnan(bins[0]["accuracy"])


def test_the_graph_layer_computes_what_the_numpy_twin_computes() -> None:
    from tiny_export import build_tiny_model

    model = build_tiny_model()
    images = np.random.default_rng(3).random((5, 32, 32, 3)).astype(np.float32)
    raw = np.asarray(model(images, training=False), dtype=np.float64)
    served = with_temperature(model, 1.7)
    got = np.asarray(served(images, training=False), dtype=np.float64)
    np.testing.assert_allclose(got, temperature_scale(raw, 1.7), atol=1e-6)
    # Grad-CAM still finds the model's own layers behind the temperature.
    assert output_layer(served).name == "probabilities"
    assert served.get_layer("conv3") is model.get_layer("conv3")


def test_temperature_1_leaves_the_model_untouched() -> None:
    from tiny_export import build_tiny_model

    model = build_tiny_model()
    assert with_temperature(model, 1.0) is model
    assert output_layer(model).name == "probabilities"


def test_calibration_of_a_summary_without_calibration_is_t_1() -> None:
    assert calibration_of(None)["temperature"] == 1.0
    assert calibration_of({"labels": ["a", "b"]})["applied"] is False


@pytest.mark.parametrize("bad", [0, -1.0, "2", None, float("nan"), True])
def test_a_bad_recorded_temperature_is_a_usage_error(bad: object) -> None:
    with pytest.raises(UsageError, match=r"calibration\.temperature must be a positive number"):
        calibration_of({"calibration": {"temperature": bad}})
