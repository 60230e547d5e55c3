"""A stand-in for Triton's in-process ``triton_python_backend_utils``, for unit tests.

Usage::

    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", fake_pb_utils.module())
    model = load_template(path)                      # the exported model.py, imported fresh
    request = fake_pb_utils.request(image=batch)     # named input tensors

Only what ``model.py`` uses exists here: input lookup by name, output
tensors, responses with an optional error, and the logger. The live stub is
exercised by the integration tests against the real ``tritonserver``.
"""

from __future__ import annotations

import types
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class Tensor:
    """A named tensor (``pb_utils.Tensor``)."""

    def __init__(self, name: str, array: np.ndarray) -> None:
        self._name = name
        self._array = array

    def name(self) -> str:
        """The tensor's name."""
        return self._name

    def as_numpy(self) -> np.ndarray:
        """The tensor's data."""
        return self._array


class TritonError:
    """An error carried by a response (``pb_utils.TritonError``)."""

    def __init__(self, message: str) -> None:
        self._message = message

    def message(self) -> str:
        """The text the client receives."""
        return self._message


class InferenceResponse:
    """One answer (``pb_utils.InferenceResponse``)."""

    def __init__(self, output_tensors: list[Tensor], error: TritonError | None = None) -> None:
        self._outputs = output_tensors
        self._error = error

    def output_tensors(self) -> list[Tensor]:
        """The outputs (empty when the request failed)."""
        return self._outputs

    def has_error(self) -> bool:
        """Whether the request failed."""
        return self._error is not None

    def error(self) -> TritonError | None:
        """The failure, if any."""
        return self._error

    def output(self, name: str) -> np.ndarray:
        """The output ``name`` (AssertionError if absent)."""
        found = [t.as_numpy() for t in self._outputs if t.name() == name]
        assert len(found) == 1, f"no single output {name!r} in {[t.name() for t in self._outputs]}"
        return found[0]


@dataclass
class InferenceRequest:
    """A request as Triton hands it to ``execute``: its input tensors."""

    inputs: list[Tensor]


@dataclass
class Logger:
    """``pb_utils.Logger``: records what the model logs, by level."""

    lines: list[tuple[str, str]] = field(default_factory=list)

    def log_info(self, message: str) -> None:
        self.lines.append(("info", message))

    def log_warn(self, message: str) -> None:
        self.lines.append(("warn", message))

    def log_error(self, message: str) -> None:
        self.lines.append(("error", message))


def get_input_tensor_by_name(request: InferenceRequest, name: str) -> Tensor | None:
    """The input ``name`` of ``request``, or ``None`` (as Triton's utils do)."""
    return next((t for t in request.inputs if t.name() == name), None)


def request(**inputs: np.ndarray) -> InferenceRequest:
    """A request with the given named inputs."""
    return InferenceRequest([Tensor(name, array) for name, array in inputs.items()])


def module() -> Any:
    """A fresh module object to put in ``sys.modules["triton_python_backend_utils"]``."""
    fake = types.ModuleType("triton_python_backend_utils")
    fake.Tensor = Tensor  # type: ignore[attr-defined]
    fake.TritonError = TritonError  # type: ignore[attr-defined]
    fake.InferenceResponse = InferenceResponse  # type: ignore[attr-defined]
    fake.get_input_tensor_by_name = get_input_tensor_by_name  # type: ignore[attr-defined]
    fake.Logger = Logger()  # type: ignore[attr-defined]
    return fake
