"""What Client and AsyncClient share: their arguments, the state built from them, the checks.

Usage::

    class Client(BaseClient[Transport]):
        def _init_state(self) -> None:
            self._lock = threading.RLock()  # What only the blocking client needs.

Both clients take the same arguments (documented on
:class:`~medserve_client.Client`) and differ only in how they talk to the
server, so the arguments are checked and stored once, here. Nothing here does
I/O, and constructing a client opens no connection.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Generic, TypeVar

from medserve_client import _core, contract
from medserve_client._errors import (
    InvalidInputError,
    MedServeError,
    ModelNotReadyError,
    ServerUnavailableError,
)
from medserve_client._explain import ExplainEntry
from medserve_client._models import TLS, ModelInfo, Retry, Timeout
from medserve_client._shm import ShmPool
from medserve_client.preprocessing import DEFAULT_MAX_PIXELS

log = logging.getLogger("medserve_client")

#: The wire: a ``Transport`` for the blocking client, an ``AsyncTransport`` for asyncio.
TransportT = TypeVar("TransportT")


class BaseClient(Generic[TransportT]):
    """The constructor and state of both clients; the arguments are those of ``Client``.

    Attributes:
        endpoint: Where and how to connect (URL, protocol, TLS, headers, timeouts).
        model: Triton model name of the classifier.
        version: The pinned model version, or ``None`` for the server's choice.
        retry: Retries of unavailability and overload.
        send_encoded: Send encoded files to ``<model>_encoded``.
        shared_memory: Pass tensors through system shared memory.
        max_concurrency: Requests in flight when one call is split.
        max_pixels: Larger images are refused as decompression bombs.
    """

    def __init__(
        self,
        url: str = "127.0.0.1:8001",
        *,
        model: str = "medcnn",
        version: str | int | None = None,
        protocol: str | None = None,
        timeout_s: float | Timeout = 30.0,
        retries: int | Retry | None = None,
        tls: TLS | None = None,
        headers: Mapping[str, str] | None = None,
        bearer_token: str | None = None,
        admin_key: str | None = None,
        send_encoded: bool = False,
        shared_memory: bool = False,
        max_concurrency: int = 8,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        load_balancing: str | None = None,
        transport: TransportT | None = None,
    ) -> None:
        if max_concurrency < 1:
            raise InvalidInputError(f"max_concurrency must be >= 1, got {max_concurrency}")
        if send_encoded and shared_memory:
            raise InvalidInputError("send_encoded and shared_memory cannot be combined")
        self.endpoint = _core.build_endpoint(
            url,
            protocol=protocol,
            timeout_s=timeout_s,
            tls=tls,
            headers=headers,
            bearer_token=bearer_token,
            admin_key=admin_key,
            load_balancing=load_balancing,
        )
        self.model = model
        self.version = None if version is None else str(version)
        self.retry = Retry.coerce(retries)
        self.send_encoded = send_encoded
        self.shared_memory = shared_memory
        self.max_concurrency = max_concurrency
        self.max_pixels = max_pixels
        self._transport = transport
        # Caches filled on first use; closing drops the transport and the shm pool.
        self._info: ModelInfo | None = None
        self._encoded: contract.EncodedEntry | None = None
        self._explain: ExplainEntry | None = None
        self._shm: ShmPool | None = None
        self._closed = False
        self._init_state()

    def _init_state(self) -> None:
        """Set up what only one of the clients needs (its lock, pool or semaphore)."""

    def _not_ready_error(self, *, server_seen: bool, timeout_s: float) -> MedServeError:
        """The error of a ``wait_until_ready`` that ran out of time."""
        where = f"{self.endpoint.display_url} within {timeout_s:.3g} s"
        if server_seen:
            return ModelNotReadyError(f"model {self.model!r} did not become ready at {where}")
        return ServerUnavailableError(f"no ready server at {where}; is tritonserver running?")

    def _readiness_error(self, *, server_ready: bool) -> MedServeError:
        """The error of a ``check_ready`` probe that found the server or the model not ready."""
        if not server_ready:
            return ServerUnavailableError(
                f"the server at {self.endpoint.display_url} is not ready (still loading models?)"
            )
        version = f" version {self.version}" if self.version else ""
        return ModelNotReadyError(
            f"model {self.model!r}{version} is not ready at {self.endpoint.display_url}"
        )

    def _closed_error(self) -> InvalidInputError:
        """What every call on a closed client raises (the same for both clients)."""
        return InvalidInputError(f"the client is closed; create a new {type(self).__name__}")

    def _info_without_labels(
        self, metadata: Mapping[str, Any], config: Mapping[str, Any]
    ) -> tuple[ModelInfo, bool]:
        """Model facts before the labels are read, and whether the server can name them.

        A config without ``label_filename`` cannot name the classes: they are
        named by index, with a warning (both clients).
        """
        info = contract.model_info_from(metadata, config, labels=None, version=self.version)
        if contract.has_labels(config, info.output_name):
            return info, True
        log.warning("model %s has no label_filename; classes are named by index", info.name)
        return info, False

    def _info_with_labels(
        self,
        metadata: Mapping[str, Any],
        config: Mapping[str, Any],
        info: ModelInfo,
        classifications: Any,
    ) -> ModelInfo:
        """Model facts with the labels of the classification probe's answer."""
        labels = contract.parse_labels(classifications, info.num_classes)
        return contract.model_info_from(metadata, config, labels=labels, version=self.version)

    def _check_medserve_model(self, info: ModelInfo) -> ModelInfo:
        """Refuse a model that does not take UINT8 images: it is not a medserve classifier."""
        if info.input_datatype != "UINT8":
            raise ModelNotReadyError(
                f"model {self.model!r} takes {info.input_datatype}, not UINT8: not a medserve model"
            )
        return info
