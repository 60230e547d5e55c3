"""The reference CNN, and loading a user's own Keras classifier.

Usage::

    model = build_reference_cnn((224, 224, 3), num_classes=2)
    model = load_classifier(Path("my_model.keras"))

Every network here takes float32 images scaled to [0, 1] with shape
``(batch, height, width, 3)`` and returns class probabilities. The exported
SavedModel adds the uint8 cast and scaling in front, so clients send uint8.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from medserve.errors import UsageError

if TYPE_CHECKING:
    import keras

KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")


def build_reference_cnn(
    input_shape: tuple[int, int, int] = (224, 224, 3),
    num_classes: int = 2,
    *,
    filters: Sequence[int] = (32, 64, 128),
    dense_units: int = 128,
    seed: int = 0,
) -> keras.Model:
    """Build the reference CNN (the network medserve serves by default).

    Three blocks of Conv2D(3x3, relu) and MaxPool(2) with ``filters``, then
    Flatten, Dense(``dense_units``, relu) and Dense(``num_classes``, softmax).

    Args:
        input_shape: ``(height, width, channels)`` of one image.
        num_classes: Width of the softmax output.
        filters: Filters of the three convolution blocks (smaller in tests).
        dense_units: Units of the hidden dense layer.
        seed: Seed of the weight initialisers, so a build is reproducible.

    Returns:
        An uncompiled Keras functional model named ``medcnn``.
    """
    import keras

    if num_classes < 2:
        raise UsageError(f"num_classes must be at least 2, got {num_classes}")
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=input_shape, dtype="float32", name="image")
    x = inputs
    for index, count in enumerate(filters, start=1):
        x = keras.layers.Conv2D(count, (3, 3), activation="relu", name=f"conv{index}")(x)
        x = keras.layers.MaxPooling2D((2, 2), name=f"pool{index}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(dense_units, activation="relu", name="dense")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="medcnn")


def load_classifier(path: Path) -> keras.Model:
    """Load a user's Keras model file and check that it is an image classifier.

    Args:
        path: A ``.keras`` or ``.h5`` file.

    Raises:
        UsageError: The file is missing, is not a Keras model, or does not map
            one RGB image to a probability vector.
    """
    import keras

    if not path.exists():
        raise UsageError(f"model file {path} does not exist")
    if path.is_dir() or path.suffix.lower() not in KERAS_SUFFIXES:
        raise UsageError(
            f"model file {path} is not a Keras model file: expected one of "
            f"{', '.join(KERAS_SUFFIXES)}"
        )
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as exc:  # Keras raises many unrelated types for a bad file.
        raise UsageError(
            f"model file {path} could not be loaded as a Keras model "
            f"({type(exc).__name__}); save it with model.save('model.keras')"
        ) from exc
    check_classifier(model, source=str(path))
    return model


def check_classifier(model: keras.Model, *, source: str = "the model") -> None:
    """Check that ``model`` maps one RGB image to a probability vector.

    Raises:
        UsageError: naming what is wrong with the input or the output.
    """
    inputs = model.inputs
    if len(inputs) != 1:
        raise UsageError(f"{source} has {len(inputs)} inputs; an image classifier has one")
    shape = tuple(inputs[0].shape)
    if len(shape) != 4 or shape[-1] != 3 or any(d is None for d in shape[1:3]):
        raise UsageError(
            f"{source} input has shape {shape}; expected an RGB image "
            "(batch, height, width, 3) with a fixed height and width"
        )
    outputs = model.outputs
    if len(outputs) != 1 or len(outputs[0].shape) != 2 or outputs[0].shape[-1] is None:
        raise UsageError(
            f"{source} output has shape {[tuple(o.shape) for o in outputs]}; "
            "expected one probability vector (batch, num_classes)"
        )
    if outputs[0].shape[-1] < 2:
        raise UsageError(f"{source} outputs {outputs[0].shape[-1]} class; expected 2 or more")
    activation = getattr(model.layers[-1], "activation", None)
    if getattr(activation, "__name__", None) not in ("softmax", "sigmoid"):
        raise UsageError(
            f"{source} does not end in a softmax layer, so its output is not a "
            "probability vector; add keras.layers.Softmax() as the last layer"
        )


def model_image_size(model: keras.Model) -> tuple[int, int]:
    """``(height, width)`` of the images ``model`` takes (checked by :func:`check_classifier`)."""
    shape = model.inputs[0].shape
    return (int(shape[1]), int(shape[2]))


def check_image_size(image_size: tuple[int, int], conv_blocks: int) -> None:
    """Check that ``image_size`` survives ``conv_blocks`` blocks of the reference CNN.

    Each 3x3 conv + 2x2 pool block takes ``(s - 2) // 2``; the last must stay >= 1.

    Raises:
        UsageError: naming the size and what to change.
    """
    if len(image_size) != 2 or min(image_size) < 8:
        raise UsageError(f"image size {tuple(image_size)} is too small: at least 8x8")
    for side in image_size:
        for _ in range(conv_blocks):
            side = (side - 2) // 2
        if side < 1:
            raise UsageError(
                f"image size {tuple(image_size)} is too small for {conv_blocks} convolution "
                "blocks; use a larger --image-size or fewer --filters"
            )
