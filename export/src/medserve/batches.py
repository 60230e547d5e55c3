"""Feeding uint8 images to Keras as float32 batches, and scoring a model on them.

Usage::

    model.fit(batches(train_set, 8, shuffle_seed=0), validation_data=batches(val_set, 8))
    evaluate(model, val_set)   # {"val_accuracy": ..., "val_roc_auc": ..., "val_loss": ...}

Images stay uint8 in memory and are scaled to [0, 1] one batch at a time, the
same ``uint8 / 255`` the exported SavedModel applies to a request.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from medserve.data import LabelledImages
from medserve.metrics import accuracy, roc_auc

if TYPE_CHECKING:
    import keras


def evaluate(model: keras.Model, data: LabelledImages, *, batch_size: int = 32) -> dict[str, float]:
    """Accuracy, ROC AUC and categorical cross-entropy of ``model`` on ``data``."""
    return score(data.labels, predict_probabilities(model, data, batch_size=batch_size))


def predict_probabilities(
    model: keras.Model, data: LabelledImages, *, batch_size: int = 32
) -> np.ndarray:
    """``model``'s float64 ``(rows, classes)`` outputs for ``data``, in order."""
    probabilities = model.predict(batches(data, batch_size, shuffle_seed=None), verbose=0)
    return np.asarray(probabilities, dtype=np.float64)


def score(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """``val_accuracy``, ``val_roc_auc`` and ``val_loss`` of ``probabilities``."""
    # Keras clips probabilities to [eps, 1 - eps] in its loss; do the same.
    picked = np.clip(probabilities[np.arange(len(labels)), labels], 1e-7, 1.0 - 1e-7)
    return {
        "val_accuracy": accuracy(labels, probabilities),
        "val_roc_auc": roc_auc(labels, probabilities),
        "val_loss": float(-np.mean(np.log(picked))),
    }


def batches(data: LabelledImages, batch_size: int, *, shuffle_seed: int | None = None) -> Any:
    """A Keras ``PyDataset`` of float32 batches in [0, 1], reshuffled each epoch when seeded.

    Images stay uint8 in memory; each batch is scaled on the fly (a quarter of
    the memory of a float32 copy of the whole set).
    """
    import keras

    onehot = keras.utils.to_categorical(data.labels, num_classes=len(data.label_names))

    class _Batches(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__()
            self._order = np.arange(len(data))
            self._rng = np.random.default_rng(shuffle_seed)
            if shuffle_seed is not None:
                self._rng.shuffle(self._order)

        def __len__(self) -> int:
            return math.ceil(len(data) / batch_size)

        def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
            rows = np.sort(self._order[index * batch_size : (index + 1) * batch_size])
            # The same cast and scaling the exported graph applies to a uint8 request.
            images = data.images[rows].astype(np.float32) / np.float32(255.0)
            return images, onehot[rows]

        def on_epoch_end(self) -> None:
            if shuffle_seed is not None:
                self._rng.shuffle(self._order)

    return _Batches()
