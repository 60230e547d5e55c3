"""The Keras model behind the integration tests' ``served_repo``, and its exported temperature.

Usage::

    from served_model_builder import SERVED_TEMPERATURE, build_served_keras_model

A module of its own (not ``conftest``): ``from conftest import ...`` would
pick whichever of the test folders' ``conftest.py`` pytest imported first.
"""

from __future__ import annotations

from typing import Any

from medserve.spec import ModelSpec

# The temperature exported into the served classifier (a test input, not a fit).
SERVED_TEMPERATURE = 3.0


def build_served_keras_model(spec: ModelSpec) -> Any:
    """The tiny reference CNN that ``served_repo`` exports (seeded: the same weights each call)."""
    from medserve.model import build_reference_cnn

    return build_reference_cnn(
        spec.input_shape, spec.num_classes, filters=(4, 8, 8), dense_units=8, seed=0
    )
