"""Temperature scaling fitted on the validation split, and how calibrated a model is.

Usage::

    result = calibrate(validation_labels, validation_probabilities)
    result.temperature            # 1.0 when scaling would not help (see result.note)
    calibrated = temperature_scale(probabilities, result.temperature)
    expected_calibration_error(labels, calibrated)        # 15 equal-width bins
    brier_score(labels, calibrated)

Temperature scaling (Guo et al. 2017, "On Calibration of Modern Neural
Networks") divides a classifier's logits by one scalar ``T`` fitted by
minimising the negative log-likelihood on held-out data. The models medserve
exports end in a softmax, so the logits are recovered as ``log(p)`` (up to a
per-row constant, which softmax ignores): the calibrated output is
``softmax(log(max(p, floor)) / T)``. :mod:`medserve.temperature` applies the
same formula inside the exported graph; this module is its numpy twin, used to
fit ``T`` and to measure the result without TensorFlow.

The fit is a golden-section search over ``beta = 1 / T``: the NLL of
``softmax(beta * z)`` is convex in ``beta``, so the bounded 1-D search finds
the global minimum. A fitted temperature is kept only if it does not raise the
expected calibration error on the data it was fitted on; otherwise ``T = 1``
and :attr:`Calibration.note` says why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

ECE_BINS = 15
# Floor under a probability before its log: float32 softmax outputs of an
# over-confident model underflow to exactly 0. 1e-30 is a normal float32, so
# the log stays finite (-69) in the graph as well as here.
PROBABILITY_FLOOR = 1e-30
# Search range of T. Outside it a model is broken rather than miscalibrated.
TEMPERATURE_BOUNDS = (0.05, 20.0)
_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


@dataclass(frozen=True)
class Calibration:
    """The outcome of :func:`calibrate`.

    Attributes:
        temperature: The temperature to apply (1.0 means the output is unchanged).
        fitted_temperature: The NLL minimiser, before the "never worse" rule.
        applied: True when ``temperature`` differs from 1.
        note: Why the fitted temperature was or was not kept.
        before: ``ece``, ``brier`` and ``nll`` of the raw probabilities.
        after: The same of the calibrated probabilities.
        samples: Rows the temperature was fitted on.
        bins: Bins of the expected calibration error.
    """

    temperature: float
    fitted_temperature: float
    applied: bool
    note: str
    before: dict[str, float]
    after: dict[str, float]
    samples: int
    bins: int = ECE_BINS

    def to_json(self) -> dict[str, Any]:
        """Plain JSON values, the ``calibration`` section of ``training.json``."""
        return {
            "method": "temperature scaling (NLL on the validation split)",
            "temperature": self.temperature,
            "fitted_temperature": self.fitted_temperature,
            "applied": self.applied,
            "note": self.note,
            "samples": self.samples,
            "ece_bins": self.bins,
            "before": dict(self.before),
            "after": dict(self.after),
        }


def temperature_scale(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log(max(p, floor)) / T)`` row by row (float64).

    Args:
        probabilities: ``(rows, classes)`` softmax outputs.
        temperature: ``T > 0``; above 1 softens, below 1 sharpens.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    logits = np.log(np.clip(np.asarray(probabilities, dtype=np.float64), PROBABILITY_FLOOR, 1.0))
    return _softmax(logits / temperature)


def negative_log_likelihood(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean ``-log p[label]`` (the categorical cross-entropy), floored like the graph."""
    rows = np.arange(len(labels))
    picked = np.clip(
        np.asarray(probabilities, dtype=np.float64)[rows, labels], PROBABILITY_FLOOR, 1
    )
    return float(-np.mean(np.log(picked)))


def brier_score(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean over rows of ``sum_k (p_k - [k == label])^2`` (Brier's multi-class score, 0 best).

    For two classes this is twice the one-column score ``mean((p_1 - y)^2)``.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    onehot = np.eye(probabilities.shape[1])[np.asarray(labels)]
    return float(np.mean(np.sum((probabilities - onehot) ** 2, axis=1)))


def reliability_bins(
    labels: np.ndarray, probabilities: np.ndarray, bins: int = ECE_BINS
) -> list[dict[str, float]]:
    """Top-label reliability: per equal-width confidence bin, its count, confidence, accuracy.

    A row falls in bin ``i`` when its top probability is in ``(i/bins, (i+1)/bins]``
    (the first bin also takes 0). Empty bins are listed with count 0.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == np.asarray(labels)
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    table = []
    for b in range(bins):
        members = index == b
        count = int(members.sum())
        table.append(
            {
                "lower": b / bins,
                "upper": (b + 1) / bins,
                "count": count,
                "confidence": float(confidence[members].mean()) if count else math.nan,
                "accuracy": float(correct[members].mean()) if count else math.nan,
            }
        )
    return table


def expected_calibration_error(
    labels: np.ndarray, probabilities: np.ndarray, bins: int = ECE_BINS
) -> float:
    """ECE: the count-weighted mean of ``|accuracy - confidence|`` over the bins."""
    total = len(labels)
    if total == 0:
        return math.nan
    return float(
        sum(
            row["count"] / total * abs(row["accuracy"] - row["confidence"])
            for row in reliability_bins(labels, probabilities, bins)
            if row["count"]
        )
    )


def calibration_summary(
    labels: np.ndarray, probabilities: np.ndarray, bins: int = ECE_BINS
) -> dict[str, float]:
    """``{"ece": ..., "brier": ..., "nll": ...}`` of ``probabilities``."""
    return {
        "ece": expected_calibration_error(labels, probabilities, bins),
        "brier": brier_score(labels, probabilities),
        "nll": negative_log_likelihood(labels, probabilities),
    }


def fit_temperature(
    labels: np.ndarray,
    probabilities: np.ndarray,
    bounds: tuple[float, float] = TEMPERATURE_BOUNDS,
    tolerance: float = 1e-6,
) -> float:
    """The temperature in ``bounds`` that minimises the NLL of the scaled probabilities."""
    labels = np.asarray(labels)
    logits = np.log(np.clip(np.asarray(probabilities, dtype=np.float64), PROBABILITY_FLOOR, 1.0))

    def nll(beta: float) -> float:
        return negative_log_likelihood(labels, _softmax(logits * beta))

    # Golden-section search over beta = 1/T, where the NLL is convex.
    low, high = 1.0 / bounds[1], 1.0 / bounds[0]
    a, b = high - _GOLDEN * (high - low), low + _GOLDEN * (high - low)
    nll_a, nll_b = nll(a), nll(b)
    while high - low > tolerance:
        if nll_a <= nll_b:
            high, b, nll_b = b, a, nll_a
            a = high - _GOLDEN * (high - low)
            nll_a = nll(a)
        else:
            low, a, nll_a = a, b, nll_b
            b = low + _GOLDEN * (high - low)
            nll_b = nll(b)
    return 1.0 / ((low + high) / 2.0)


def calibrate(
    labels: np.ndarray,
    probabilities: np.ndarray,
    *,
    bins: int = ECE_BINS,
    skip_reason: str | None = None,
) -> Calibration:
    """Fit a temperature on held-out ``(labels, probabilities)`` and keep it if it helps.

    Args:
        labels: Class index per row (the validation split).
        probabilities: The model's ``(rows, classes)`` softmax outputs for them.
        bins: Bins of the expected calibration error.
        skip_reason: When set, no temperature is fitted (``T = 1``) and this is
            the note, e.g. for a model that does not end in a softmax.

    Returns:
        The temperature and the ECE, Brier score and NLL before and after.
    """
    labels = np.asarray(labels)
    before = calibration_summary(labels, probabilities, bins)
    if skip_reason is not None:
        return Calibration(1.0, 1.0, False, skip_reason, before, dict(before), len(labels), bins)
    fitted = fit_temperature(labels, probabilities)
    after = calibration_summary(labels, temperature_scale(probabilities, fitted), bins)
    if after["ece"] > before["ece"]:
        note = (
            f"the fitted temperature {fitted:.3f} would raise the validation ECE from "
            f"{before['ece']:.4f} to {after['ece']:.4f}, so T = 1 is kept (output unchanged)"
        )
        return Calibration(1.0, fitted, False, note, before, dict(before), len(labels), bins)
    note = (
        f"T = {fitted:.3f} minimises the validation NLL and does not raise its ECE; "
        "applied inside the exported graph"
    )
    return Calibration(fitted, fitted, True, note, before, after, len(labels), bins)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)
