"""The fitted temperature, inside the exported graph: one Keras layer for every runtime.

Usage::

    served = with_temperature(model, 1.37)     # model -> softmax(log(p) / 1.37)
    write_classifier_savedmodel(served, path, spec)

:func:`with_temperature` appends :class:`TemperatureScaling` to a classifier.
The exporter calls it once, before any artifact is written, so the SavedModel,
the ONNX file, the recorded ``expected_io`` outputs and the verifier's Keras
reference all see the same calibrated model: the served ``probabilities`` are
calibrated on every runtime, and there is one implementation of the formula
in a graph (its numpy twin, used to fit ``T``, is
:func:`medserve.calibration.temperature_scale`).

The layer uses only ``keras.ops`` clip, log, divide and softmax, which lower to
standard TensorFlow ops (the 25.02 TF backend) and to standard ONNX ops.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from medserve.calibration import PROBABILITY_FLOOR
from medserve.errors import UsageError

if TYPE_CHECKING:
    import keras

LAYER_NAME = "temperature_scaling"


def with_temperature(model: keras.Model, temperature: float) -> keras.Model:
    """``model`` followed by ``softmax(log(max(p, floor)) / temperature)``.

    Returns ``model`` itself when ``temperature`` is 1: the output is then
    unchanged, and a model that ends in a sigmoid is never renormalised.

    Args:
        model: A Keras classifier whose single output is a probability vector.
        temperature: ``T > 0`` from :func:`medserve.calibration.calibrate`.

    Raises:
        ValueError: ``temperature`` is not a positive number.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if temperature == 1.0:
        return model
    import keras

    # Built on the model's own input and output tensors, so its layers (the
    # convolutions Grad-CAM reads) stay reachable by name in the new model.
    outputs = temperature_layer(temperature)(model.outputs[0])
    # The single input tensor, not the list: called on a bare tensor, a model
    # built on a one-element list warns that the input structure differs.
    return keras.Model(model.inputs[0], outputs, name=model.name)


def output_layer(model: keras.Model) -> Any:
    """The model's own last layer, looking through an appended temperature layer.

    Grad-CAM takes its class scores from the logits of this layer; the
    temperature only rescales them, which its normalised heatmap ignores.
    """
    last = model.layers[-1]
    return model.layers[-2] if last.name == LAYER_NAME and len(model.layers) > 1 else last


def calibration_of(training_summary: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``calibration`` section of a ``training.json``, or a ``T = 1`` section if none.

    Raises:
        UsageError: The section's temperature is not a positive finite number.
    """
    section = (training_summary or {}).get("calibration")
    if section is None:
        return {
            "temperature": 1.0,
            "applied": False,
            "note": "no calibration recorded for this model (no training.json from "
            "`medserve train`): probabilities are served as the model outputs them",
        }
    temperature = section.get("temperature") if isinstance(section, Mapping) else None
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, int | float)
        or not math.isfinite(temperature)
        or temperature <= 0
    ):
        raise UsageError(
            f"training.json: calibration.temperature must be a positive number, got "
            f"{temperature!r}; retrain with `medserve train` or delete the calibration section"
        )
    return {**section, "temperature": float(temperature)}


def temperature_layer(temperature: float) -> Any:
    """A new :class:`TemperatureScaling` layer named ``temperature_scaling``."""
    return _layer_class()(temperature=temperature, name=LAYER_NAME)


@functools.cache
def _layer_class() -> Any:
    """Define the layer on first use: importing Keras at module import is too slow."""
    import keras

    @keras.saving.register_keras_serializable(package="medserve")
    class TemperatureScaling(keras.layers.Layer):
        """``softmax(log(max(p, floor)) / temperature)`` over the last axis."""

        def __init__(self, temperature: float = 1.0, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.temperature = float(temperature)

        def call(self, probabilities: Any) -> Any:
            ops = keras.ops
            clipped = ops.clip(probabilities, PROBABILITY_FLOOR, 1.0)
            return ops.softmax(ops.log(clipped) / self.temperature, axis=-1)

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "temperature": self.temperature}

    return TemperatureScaling
