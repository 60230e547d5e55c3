"""Small keyword-only value objects: what a call returns and how it behaves.

Usage::

    from medserve_client import Client, Retry, Timeout

    client = Client("127.0.0.1:8001", timeout_s=Timeout(connect_s=2.0, request_s=10.0),
                    retries=Retry(backoff_s=0.1))  # until the deadline
    prediction = client.classify("scan.png", top_k=2)[0]
    prediction.label, prediction.score, prediction.top_k

Each class validates itself in ``__post_init__`` and raises ``ValueError`` (an
:class:`~medserve_client.exceptions.InvalidInputError`) naming the field.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from os import PathLike
from typing import Any

import numpy as np
import numpy.typing as npt

from medserve_client._errors import InvalidInputError

# 2 ** 60 times any sensible backoff_s is far above any max_backoff_s.
_MAX_BACKOFF_EXPONENT = 60


@dataclass(frozen=True, eq=False)
class Prediction:
    """The classification of one input.

    Attributes:
        label: The most probable class.
        score: Its probability.
        top_k: The ``k`` most probable ``(label, probability)`` pairs, best first.
        probabilities: Read-only float32 vector of every class, in label order.
        model_name: The model that answered.
        model_version: The version that answered (from the response, not the request).
        latency_ms: Round-trip time of the request that carried this input,
            including the other inputs of the same request.
    """

    label: str
    score: float
    top_k: tuple[tuple[str, float], ...]
    probabilities: npt.NDArray[np.float32] = field(repr=False)
    model_name: str
    model_version: str
    latency_ms: float


@dataclass(frozen=True, eq=False, kw_only=True)
class Explanation:
    """A Grad-CAM explanation of one input. Supportive only, not a diagnosis.

    Attributes:
        prediction: The classification of the input (all classes in ``top_k``).
        class_index: The class explained (the predicted one unless one was named).
        label: Its label.
        heatmap: Read-only float32 ``(H, W)`` in [0, 1], aligned with the
            served input (the image after resizing); 1 where the evidence for
            ``label`` is strongest.
        overlay: The heatmap blended over the input (top ``H`` rows) above a
            banner that names the class and says the map is supportive only.
        note: The same caveat as text, for whatever shows this explanation.
    """

    prediction: Prediction
    class_index: int
    label: str
    heatmap: npt.NDArray[np.float32] = field(repr=False)
    overlay: Any = field(repr=False)
    note: str


@dataclass(frozen=True, kw_only=True)
class ModelInfo:
    """What the server says about a model (metadata and config, never hard-coded).

    Attributes:
        name: Triton model name.
        version: The version the client pins, or the newest one the server lists.
        versions: Every version the server lists.
        platform: Backend platform reported by the server (``tensorflow_savedmodel``,
            ``python``, ``ensemble``...).
        input_name: Name of the image input tensor.
        input_datatype: KServe datatype of that input (``UINT8``).
        input_shape: ``(height, width, channels)`` of one image, without the batch.
        output_name: Name of the probability output.
        labels: Class names in output order, read through Triton's
            classification extension (``label_filename`` in the config).
        max_batch_size: Largest batch one request may carry (0: no batching).
    """

    name: str
    version: str
    versions: tuple[str, ...]
    platform: str
    input_name: str
    input_datatype: str
    input_shape: tuple[int, int, int]
    output_name: str
    labels: tuple[str, ...]
    max_batch_size: int

    @property
    def image_size(self) -> tuple[int, int]:
        """``(height, width)`` the server expects."""
        return (self.input_shape[0], self.input_shape[1])

    @property
    def num_classes(self) -> int:
        """Width of the probability output."""
        return len(self.labels)


@dataclass(frozen=True, kw_only=True)
class Timeout:
    """Time limits of a client.

    Attributes:
        connect_s: Limit to open a connection (HTTP) or to wait for the channel
            to become ready in :meth:`Client.wait_until_ready` polls.
        request_s: Deadline of one public call (``classify``, ``model_info``...),
            retries and backoff included.
    """

    connect_s: float = 5.0
    request_s: float = 30.0

    def __post_init__(self) -> None:
        for name in ("connect_s", "request_s"):
            value = getattr(self, name)
            if not value > 0:
                raise InvalidInputError(f"Timeout.{name} must be > 0 seconds, got {value!r}")

    @classmethod
    def coerce(cls, value: float | Timeout | None) -> Timeout:
        """Accept a number of seconds (the request deadline) or a :class:`Timeout`."""
        if value is None:
            return cls()
        if isinstance(value, Timeout):
            return value
        return cls(request_s=float(value))


@dataclass(frozen=True, kw_only=True)
class Retry:
    """Retries of unavailability and overload, with exponential backoff and full jitter.

    By default a call is retried until its deadline (``Timeout.request_s`` or
    the call's ``timeout_s``), however many attempts that takes, so an outage
    shorter than the deadline costs no call. ``attempts`` adds a count limit.

    Attempt ``n`` (1-based) that failed with a retryable error waits a random
    time in ``[0, min(max_backoff_s, backoff_s * 2 ** (n - 1))]`` before the next
    one ("full jitter", so many clients that failed together do not retry
    together), and never past the call's deadline.

    Attributes:
        attempts: Total attempts, the first included (1: no retries); None
            (the default): no count limit, the deadline alone ends the retries.
        backoff_s: Base of the exponential backoff.
        max_backoff_s: Cap of one wait.
    """

    attempts: int | None = None
    backoff_s: float = 0.05
    max_backoff_s: float = 1.0

    def __post_init__(self) -> None:
        if self.attempts is not None and self.attempts < 1:
            raise InvalidInputError(
                f"Retry.attempts must be >= 1 (or None: until the deadline), got {self.attempts}"
            )
        if self.backoff_s < 0 or self.max_backoff_s < 0:
            raise InvalidInputError("Retry.backoff_s and max_backoff_s must be >= 0")

    @classmethod
    def coerce(cls, value: int | Retry | None) -> Retry:
        """Accept a number of retries (attempts minus one), a :class:`Retry`, or None.

        None is the default policy: retry until the deadline.
        """
        if value is None:
            return cls()
        if isinstance(value, Retry):
            return value
        return cls(attempts=int(value) + 1)

    def allows_another(self, failed_attempt: int) -> bool:
        """Whether the count limit (if any) allows an attempt after ``failed_attempt``."""
        return self.attempts is None or failed_attempt < self.attempts

    def backoff(self, failed_attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after the given failed attempt (1-based), jitter included."""
        # The exponent is capped: with no count limit a long outage reaches
        # attempt numbers whose 2 ** n no float can hold.
        exponent = min(failed_attempt - 1, _MAX_BACKOFF_EXPONENT)
        ceiling = min(self.max_backoff_s, self.backoff_s * 2.0**exponent)
        return (rng or random).uniform(0.0, ceiling)


@dataclass(frozen=True, kw_only=True)
class TLS:
    """TLS for gRPC (Triton's ``--grpc-use-ssl``) or HTTPS (an Ingress in front of Triton).

    Attributes:
        root_certificates: PEM file of the CA to trust (None: the system's).
        private_key: PEM private key of the client, for mutual TLS (gRPC).
        certificate_chain: PEM certificate chain of the client, for mutual TLS (gRPC).
        insecure: HTTPS only: do not check the host name against the certificate.
        server_name: gRPC only: the name to check the servers' certificates
            against instead of the target's host; needed for ``ipv4:`` /
            ``ipv6:`` lists, whose addresses are not the certificates' names.
    """

    root_certificates: str | PathLike[str] | None = None
    private_key: str | PathLike[str] | None = None
    certificate_chain: str | PathLike[str] | None = None
    insecure: bool = False
    server_name: str | None = None

    def __post_init__(self) -> None:
        if (self.private_key is None) != (self.certificate_chain is None):
            raise InvalidInputError(
                "TLS: mutual TLS needs both private_key and certificate_chain, or neither"
            )


@dataclass(frozen=True, kw_only=True)
class Window:
    """A DICOM display window that overrides the one stored in the file.

    Attributes:
        center: Window centre, in modality units (Hounsfield units for CT).
        width: Window width, in the same units; at least 1.
    """

    center: float
    width: float

    def __post_init__(self) -> None:
        if not self.width >= 1:
            raise InvalidInputError(f"Window.width must be >= 1, got {self.width!r}")


@dataclass(frozen=True)
class DicomSource:
    """A DICOM input with per-input options: a path, bytes or a pydicom dataset.

    Plain DICOM inputs (a DICOM path, bytes with or without the DICOM preamble,
    a dataset) work without this wrapper and give the middle frame of a
    multi-frame file; wrap them to choose another frame or to override the
    stored window.

    Attributes:
        source: Path, encoded bytes or ``pydicom.Dataset``.
        frame: 0-based frame of a multi-frame file (default: the middle one).
        window: Window to use instead of the file's VOI LUT / window.
    """

    source: Any
    frame: int | None = None
    window: Window | None = None

    def __post_init__(self) -> None:
        if self.frame is not None and self.frame < 0:
            raise InvalidInputError(f"DicomSource.frame must be >= 0, got {self.frame}")
