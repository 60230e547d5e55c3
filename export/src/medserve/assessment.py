"""After training: calibrate on the validation split and measure what the card reports.

Usage::

    assessment = assess(model, validation_set, output_dir, batch_size=8)
    assessment["calibration"]["temperature"]        # applied by the exporter
    assessment["validation_report"]["metrics"]       # with bootstrap 95 % intervals

One pass of the model over the validation split gives the raw probabilities.
From them: the training metrics (:func:`medserve.batches.score`), the fitted
temperature with ECE / Brier / NLL before and after
(:func:`medserve.calibration.calibrate`), the card's metrics with intervals on
the *calibrated* probabilities, the ones the server returns
(:func:`medserve.clinical_metrics.validation_report`), and the reliability
diagram ``reliability.png`` next to the model.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medserve.batches import predict_probabilities, score
from medserve.calibration import calibrate, reliability_bins, temperature_scale
from medserve.clinical_metrics import validation_report
from medserve.reliability_plot import RELIABILITY_FILENAME, write_reliability_diagram

if TYPE_CHECKING:
    import keras

    from medserve.data import LabelledImages

log = logging.getLogger(__name__)


def assess(
    model: keras.Model, validation_set: LabelledImages, output_dir: Path, *, batch_size: int
) -> dict[str, Any]:
    """Calibrate ``model`` on ``validation_set`` and report; writes ``reliability.png``.

    Returns:
        ``metrics`` (raw model), ``calibration`` (temperature, before/after,
        reliability bins) and ``validation_report`` (calibrated, with intervals).
    """
    labels = validation_set.labels
    raw = predict_probabilities(model, validation_set, batch_size=batch_size)
    reason = (
        None
        if ends_in_softmax(model)
        else (
            "the model does not end in a softmax, so temperature scaling of a softmax does not "
            "apply; output unchanged"
        )
    )
    calibration = calibrate(labels, raw, skip_reason=reason)
    calibrated = temperature_scale(raw, calibration.temperature) if calibration.applied else raw
    log.info(
        "calibration: T = %.3f (%s); ECE %.4f -> %.4f, Brier %.4f -> %.4f",
        calibration.temperature,
        "applied" if calibration.applied else "not applied",
        calibration.before["ece"],
        calibration.after["ece"],
        calibration.before["brier"],
        calibration.after["brier"],
    )
    section = calibration.to_json()
    section["reliability_diagram"] = RELIABILITY_FILENAME
    section["reliability_bins"] = {
        "before": reliability_bins(labels, raw, calibration.bins),
        "after": reliability_bins(labels, calibrated, calibration.bins),
    }
    write_reliability_diagram(output_dir / RELIABILITY_FILENAME, section)
    return {
        "metrics": score(labels, raw),
        "calibration": section,
        "validation_report": validation_report(
            labels, calibrated, label_names=validation_set.label_names
        ),
    }


def ends_in_softmax(model: keras.Model) -> bool:
    """True when the last layer is a softmax (a Dense with softmax, or a Softmax layer)."""
    last = model.layers[-1]
    activation = getattr(last, "activation", None)
    return type(last).__name__ == "Softmax" or getattr(activation, "__name__", "") == "softmax"
