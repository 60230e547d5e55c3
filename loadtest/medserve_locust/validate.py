"""Judging a classifier's answer: a wrong answer is a failure, never a success.

Usage::

    validator = ResponseValidator(num_classes=2, labels=("normal", "lesion"))
    predicted = validator.check(probabilities, batch_size=4)  # -> ["lesion", ...]
    # raises WrongAnswerError when the shape, the probabilities or the label are wrong

A load test that counts any HTTP 200 as success measures how fast a server can
answer wrongly; every response here is checked before it counts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class WrongAnswerError(Exception):
    """The server answered, but not with a valid classification of the batch."""


@dataclass(frozen=True, kw_only=True)
class ResponseValidator:
    """Checks probability outputs against what the model must return.

    Attributes:
        num_classes: Expected width of the output.
        labels: Expected label names, in output order; empty to name classes
            by index only.
        tolerance: Allowed distance of each row's sum from 1 (float32 softmax).
    """

    num_classes: int
    labels: tuple[str, ...] = ()
    tolerance: float = 1e-3

    def __post_init__(self) -> None:
        if self.labels and len(self.labels) != self.num_classes:
            raise ValueError(f"{len(self.labels)} labels given for {self.num_classes} classes")

    @classmethod
    def for_labels(cls, labels: tuple[str, ...], served_classes: int) -> ResponseValidator:
        """Expect ``labels`` when given (they win over the server), else the served count."""
        if labels:
            return cls(num_classes=len(labels), labels=labels)
        return cls(num_classes=served_classes)

    def check(self, probabilities: np.ndarray | None, batch_size: int) -> list[str]:
        """Validate one response and return the predicted label of each image.

        Args:
            probabilities: The output tensor as returned (``None`` if missing).
            batch_size: Images sent in the request.

        Raises:
            WrongAnswerError: naming the first thing that is wrong.
        """
        if probabilities is None:
            raise WrongAnswerError("the response has no probability output")
        expected = (batch_size, self.num_classes)
        if probabilities.shape != expected:
            raise WrongAnswerError(f"output shape {probabilities.shape}, expected {expected}")
        if probabilities.dtype.kind != "f":
            raise WrongAnswerError(f"output dtype {probabilities.dtype}, expected floating point")
        if not np.all(np.isfinite(probabilities)):
            raise WrongAnswerError("output has NaN or infinite values")
        low, high = float(probabilities.min()), float(probabilities.max())
        if low < -self.tolerance or high > 1 + self.tolerance:
            raise WrongAnswerError(f"probabilities outside [0, 1]: min {low:.4g}, max {high:.4g}")
        sums = probabilities.sum(axis=1, dtype=np.float64)
        worst = float(np.max(np.abs(sums - 1.0)))
        if worst > self.tolerance:
            raise WrongAnswerError(f"probabilities sum to {sums.tolist()}, not 1")
        indices = probabilities.argmax(axis=1)
        if self.labels:
            return [self.labels[i] for i in indices]
        return [f"class {i}" for i in indices]
