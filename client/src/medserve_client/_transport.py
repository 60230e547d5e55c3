"""The wire: tritonclient behind a small interface, and the one place errors are mapped.

Usage::

    from medserve_client._sync_transports import open_transport

    transport = open_transport(Endpoint(url="127.0.0.1:8001", protocol="grpc"))
    transport.server_ready(timeout_s=1.0)
    reply = transport.infer(InferCall(model="medcnn", version="", input_name="image",
                                      array=batch, outputs=(OutputSpec("probabilities"),),
                                      timeout_s=5.0))

:class:`Transport` is what :class:`~medserve_client.Client` talks to; unit
tests pass a fake one (no socket), httpx-style. Every tritonclient, gRPC,
socket or timeout exception is turned into the most specific
:mod:`~medserve_client.exceptions` class by :func:`map_error` (through
:func:`mapped`), with ``raise ... from exc``; nowhere else. The blocking
implementations live in ``_sync_transports``, the asyncio ones in
``_async_transports``; both call :func:`mapped` around every request, and
both build their requests and read the answers with ``_requests``.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy.typing as npt

from medserve_client import _errors
from medserve_client._models import TLS, Timeout
from medserve_client._targets import resolver_scheme

_MAX_SERVER_MESSAGE = 300
# Triton's messages for the dynamic batcher's queue policy (queue full, or a
# request that waited past its queue timeout): both mean "slow down".
_OVERLOAD = re.compile(r"maximum queue size|queue is full|timeout expired|rejected", re.I)
_MODEL_MISSING = re.compile(
    r"unknown model|not ready|no available version|is not found|not loaded|unavailable model", re.I
)
# Triton's answer to an admin call without the key: 403 "This API is restricted"
# (HTTP) or UNAVAILABLE "This protocol is restricted" (gRPC).
_RESTRICTED = re.compile(r"is restricted, expecting header", re.I)
_TLS_FAILED = re.compile(
    r"handshake fail|certificate_verify_failed|certificate verify failed|ssl_error|"
    r"wrong_version_number|tsi_protocol_failure|"
    # gRPC's check of the certificate's name (UNAVAILABLE, once per address).
    r"hostname verification check failed",
    re.I,
)
# Triton 2.59+ (--http-max-input-size), gRPC's message limit, a proxy's 413.
_TOO_LARGE = re.compile(
    r"exceeds the maximum allowed value|larger than max|request entity too large|"
    r"payload too large",
    re.I,
)
# The server or one of its backend processes died with the request in flight:
# Triton's Python backend answers "Stub process '<model>_0_0' is not healthy"
# (INTERNAL) for a crashed stub, gRPC answers "Stream removed" or RST_STREAM
# (UNKNOWN/INTERNAL) when the server process vanishes mid-stream, aiohttp
# "Response payload is not completed". Classification is a pure function, so
# these are unavailability: retried until the deadline, never a lost call.
_PROCESS_LOST = re.compile(
    r"stub process .* not healthy|stream removed|rst_stream|payload is not completed",
    re.I,
)
_UNREACHABLE = re.compile(
    r"failed to connect|connection refused|connect failed|socket closed|dns resolution|"
    r"name resolution|broken pipe|connection reset|unavailable|"
    # The server died or restarted with the request in flight (geventhttpclient,
    # aiohttp): a pure function is safe to send again.
    r"connection closed|server disconnected",
    re.I,
)


@dataclass(frozen=True, kw_only=True)
class Endpoint:
    """Where and how to connect.

    Attributes:
        url: ``host:port`` (no scheme), or a gRPC resolver target
            (``dns:///host:port``, ``ipv4:addr:port,addr:port``...).
        protocol: ``"grpc"`` or ``"http"``.
        ssl: TLS for gRPC, HTTPS for HTTP.
        tls: Certificates and options when ``ssl`` is on.
        headers: Sent with every request (gRPC metadata keys are lower-cased).
        timeout: Connect and request limits.
        admin_headers: Sent only with admin calls (shared-memory registration):
            the admin key, never with inference.
        load_balancing: gRPC's load-balancing policy over the addresses the
            target resolves to (``round_robin``, ``pick_first``); None: gRPC's
            default (``pick_first``).
    """

    url: str
    protocol: str = "grpc"
    ssl: bool = False
    tls: TLS | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout: Timeout = field(default_factory=Timeout)
    admin_headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    load_balancing: str | None = None

    @property
    def display_url(self) -> str:
        """URL with scheme, for messages (never with headers or tokens)."""
        if self.protocol == "grpc" and resolver_scheme(self.url) is not None:
            return f"{self.url} (TLS)" if self.ssl else self.url
        scheme = {"grpc": "grpcs" if self.ssl else "grpc", "http": "https" if self.ssl else "http"}
        return f"{scheme[self.protocol]}://{self.url}"


@dataclass(frozen=True)
class OutputSpec:
    """One requested output: by value, as ``k`` classifications, or into shared memory."""

    name: str
    class_count: int = 0
    shm_region: str | None = None
    shm_byte_size: int = 0
    shm_offset: int = 0


@dataclass(frozen=True, kw_only=True)
class InferCall:
    """One inference request, independent of the protocol."""

    model: str
    version: str
    input_name: str
    datatype: str = "UINT8"
    array: npt.NDArray[Any] | None = None
    shape: tuple[int, ...] = ()
    shm_region: str | None = None
    shm_byte_size: int = 0
    outputs: tuple[OutputSpec, ...] = ()
    timeout_s: float = 30.0
    # More inputs by value, ``(name, datatype, array)``: the explain model's class index.
    extra_inputs: tuple[tuple[str, str, npt.NDArray[Any]], ...] = ()


@dataclass(frozen=True)
class InferReply:
    """Outputs by name (absent for outputs written to shared memory) and the answering version."""

    outputs: dict[str, npt.NDArray[Any]]
    model_version: str


class Transport(Protocol):
    """What a client needs from the wire; implemented per protocol and by test fakes."""

    endpoint: Endpoint

    def server_ready(self, *, timeout_s: float) -> bool: ...
    def model_ready(self, model: str, version: str, *, timeout_s: float) -> bool: ...
    def model_metadata(self, model: str, version: str, *, timeout_s: float) -> dict[str, Any]: ...
    def model_config(self, model: str, version: str, *, timeout_s: float) -> dict[str, Any]: ...
    def infer(self, call: InferCall) -> InferReply: ...
    def register_shm(self, name: str, key: str, byte_size: int, *, timeout_s: float) -> None: ...
    def unregister_shm(self, name: str, *, timeout_s: float) -> None: ...
    def close(self) -> None: ...


def map_error(
    exc: BaseException, *, endpoint: Endpoint, model: str | None, timeout_s: float, action: str
) -> _errors.MedServeError:
    """Translate any wire-level exception into the medserve-client tree.

    Args:
        exc: What tritonclient, gRPC, aiohttp, gevent or the socket layer raised.
        endpoint: The server, named in the message.
        model: The model concerned, if any.
        timeout_s: The deadline of the call, named in timeout messages.
        action: What was attempted ("infer", "model metadata"...).
    """
    if isinstance(exc, _errors.MedServeError):
        return exc
    where = f"{action} on model {model!r}" if model else action
    where += f" at {endpoint.display_url}"
    status, message = _status_and_message(exc)
    text = f"{message[:_MAX_SERVER_MESSAGE]}" if message else type(exc).__name__
    if _RESTRICTED.search(message):
        return _errors.PermissionDeniedError(
            f"{where}: refused ({text}); this API is closed behind the server's admin key: "
            "pass admin_key= to the client"
        )
    if status == "403":
        return _errors.PermissionDeniedError(
            f"{where}: forbidden by the server or a proxy ({text})"
        )
    if _TLS_FAILED.search(message):
        return _errors.TLSError(
            f"{where}: the TLS handshake failed ({text}); check TLS(root_certificates=...) "
            "names the CA that signed the server's certificate, the host name (or "
            "TLS(server_name=...)) matches it, "
            "and for mutual TLS private_key and certificate_chain"
        )
    if _TOO_LARGE.search(message) or status in ("413", "StatusCode.RESOURCE_EXHAUSTED"):
        return _errors.RequestTooLargeError(
            f"{where}: the request is larger than the server or its proxy accepts ({text}); "
            "send fewer or smaller images per call"
        )
    if _is_timeout(exc, status, message):
        return _errors.InferenceTimeoutError(
            f"{where}: no answer within the deadline of {timeout_s:.2g} s; "
            "raise timeout_s or reduce the batch"
        )
    if _OVERLOAD.search(message) and status not in ("StatusCode.INVALID_ARGUMENT", "400"):
        return _errors.ServerOverloadedError(
            f"{where}: the server's queue rejected the request ({text}); retry later, "
            "lower the concurrency or add replicas"
        )
    if _PROCESS_LOST.search(message) and status not in ("StatusCode.INVALID_ARGUMENT", "400"):
        return _errors.ServerUnavailableError(
            f"{where}: the server lost the request ({text}); it is restarting or a backend "
            "process crashed: check the server log"
        )
    if model and _MODEL_MISSING.search(message) and "connect" not in message.lower():
        return _errors.ModelNotReadyError(
            f"{where}: the model is not loaded or not ready ({text}); check the model name "
            "and version, and the server log"
        )
    if isinstance(exc, OSError) or status in ("StatusCode.UNAVAILABLE", "502", "503"):
        hint = "is tritonserver running and reachable?"
        if endpoint.protocol == "grpc" and not endpoint.ssl and "socket closed" in text.lower():
            # What a plaintext channel sees when the server speaks TLS.
            hint += " If it serves TLS (--grpc-use-ssl), connect with tls=TLS(...)"
        return _errors.ServerUnavailableError(f"{where}: server unavailable ({text}); {hint}")
    if _UNREACHABLE.search(message) and status in ("", "None"):
        return _errors.ServerUnavailableError(f"{where}: server unavailable ({text})")
    if status in ("StatusCode.INVALID_ARGUMENT", "400"):
        return _errors.InvalidInputError(f"{where}: the server rejected the input: {text}")
    if status == "StatusCode.NOT_FOUND" and model:
        return _errors.ModelNotReadyError(f"{where}: not found ({text}); check the model name")
    return _errors.InferenceError(f"{where} failed: {text}")


def _status_and_message(exc: BaseException) -> tuple[str, str]:
    status = getattr(exc, "status", None)
    message_fn = getattr(exc, "message", None)
    if callable(status) and callable(message_fn):  # tritonclient's InferenceServerException
        return str(status()), str(message_fn() or "")
    return "", str(exc)


def _is_timeout(exc: BaseException, status: str, message: str) -> bool:
    if status == "StatusCode.DEADLINE_EXCEEDED" or "deadline exceeded" in message.lower():
        return True
    if isinstance(exc, TimeoutError | socket.timeout):
        return True
    # gevent.Timeout (HTTP client) is a BaseException, not an OSError.
    return type(exc).__name__ == "Timeout" and type(exc).__module__.startswith("gevent")


@contextmanager
def mapped(
    endpoint: Endpoint, *, model: str | None, timeout_s: float, action: str
) -> Iterator[None]:
    """Run a block and re-raise what it raises as a mapped error, chained with ``from``."""
    try:
        yield
    except _errors.MedServeError:
        raise
    except Exception as exc:
        raise map_error(
            exc, endpoint=endpoint, model=model, timeout_s=timeout_s, action=action
        ) from exc


def grpc_headers(headers: Mapping[str, str]) -> dict[str, str] | None:
    """gRPC metadata keys must be lower-case ASCII."""
    return {key.lower(): value for key, value in headers.items()} or None
