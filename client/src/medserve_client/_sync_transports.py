"""The blocking transports: tritonclient.grpc and tritonclient.http behind :class:`Transport`.

Usage::

    transport = open_transport(Endpoint(url="127.0.0.1:8001", protocol="grpc"))
    try:
        transport.server_ready(timeout_s=1.0)
    finally:
        transport.close()

Thread safety follows tritonclient's own rules: one gRPC client (one channel)
is shared by all threads, since its unary calls are thread-safe; the HTTP
client is not thread-safe, so :class:`HttpTransport` keeps one per thread and
closes them all on :meth:`~HttpTransport.close`. Both share the
:class:`Transport` methods of :class:`BlockingTransport` and differ only in
how they create their client and send a request; every call runs inside
:func:`~medserve_client._transport.mapped`, the one error boundary.
"""

from __future__ import annotations

import threading
import weakref
from abc import ABC, abstractmethod
from typing import Any

from medserve_client._models import TLS
from medserve_client._requests import (
    Request,
    WireHeaders,
    config_from,
    grpc_channel_kwargs,
    mapped_connect,
    read_reply,
)
from medserve_client._transport import Endpoint, InferCall, InferReply, Transport


class BlockingTransport(ABC):
    """The :class:`Transport` methods, over the one :meth:`_send` each protocol implements."""

    endpoint: Endpoint
    #: ``tritonclient.grpc`` or ``tritonclient.http``: builds the inference inputs.
    _module: Any

    @abstractmethod
    def _send(self, request: Request) -> Any:
        """Call ``request.method`` inside the error boundary and return its answer."""

    @abstractmethod
    def close(self) -> None:
        """Close the connections."""

    def server_ready(self, *, timeout_s: float) -> bool:
        return bool(self._send(Request.server_ready(timeout_s=timeout_s)))

    def model_ready(self, model: str, version: str, *, timeout_s: float) -> bool:
        return bool(self._send(Request.model_ready(model, version, timeout_s=timeout_s)))

    def model_metadata(self, model: str, version: str, *, timeout_s: float) -> dict[str, Any]:
        return dict(self._send(Request.model_metadata(model, version, timeout_s=timeout_s)))

    def model_config(self, model: str, version: str, *, timeout_s: float) -> dict[str, Any]:
        return config_from(self._send(Request.model_config(model, version, timeout_s=timeout_s)))

    def infer(self, call: InferCall) -> InferReply:
        return read_reply(self._send(Request.infer(self._module, call)), call)

    def register_shm(self, name: str, key: str, byte_size: int, *, timeout_s: float) -> None:
        self._send(Request.register_shm(name, key, byte_size, timeout_s=timeout_s))

    def unregister_shm(self, name: str, *, timeout_s: float) -> None:
        self._send(Request.unregister_shm(name, timeout_s=timeout_s))


class GrpcTransport(BlockingTransport):
    """tritonclient.grpc: one channel shared by every thread (unary calls are thread-safe)."""

    def __init__(self, endpoint: Endpoint) -> None:
        import tritonclient.grpc as grpcclient

        self.endpoint = endpoint
        self._module = grpcclient
        with mapped_connect(endpoint):
            self._client = grpcclient.InferenceServerClient(
                endpoint.url, **grpc_channel_kwargs(endpoint)
            )
        self._headers = WireHeaders.of(endpoint)

    def _send(self, request: Request) -> Any:
        kwargs = request.kwargs_for("grpc", self._headers)
        with request.mapped(self.endpoint):
            return getattr(self._client, request.method)(**kwargs)

    def close(self) -> None:
        self._client.close()


class HttpTransport(BlockingTransport):
    """tritonclient.http: not thread-safe, so one client per thread, all closed together."""

    def __init__(self, endpoint: Endpoint) -> None:
        import tritonclient.http as httpclient

        self.endpoint = endpoint
        self._module = httpclient
        self._local = threading.local()
        self._lock = threading.Lock()
        # Weak: a client dies with its thread (its __del__ closes it), so the
        # worker threads of many classify_many calls do not pile up connections.
        self._clients: weakref.WeakSet[Any] = weakref.WeakSet()
        self._headers = WireHeaders.of(endpoint)

    def _client(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            tls = self.endpoint.tls or TLS()
            ssl_options = {}
            if tls.root_certificates is not None:
                ssl_options["ca_certs"] = str(tls.root_certificates)
            with mapped_connect(self.endpoint):
                client = self._module.InferenceServerClient(
                    self.endpoint.url,
                    connection_timeout=self.endpoint.timeout.connect_s,
                    # One attempt may use the whole deadline; the retry loop
                    # bounds the total (the HTTP client has no per-call timeout).
                    network_timeout=self.endpoint.timeout.request_s,
                    ssl=self.endpoint.ssl,
                    ssl_options=ssl_options or None,
                    insecure=tls.insecure,
                )
            self._local.client = client
            with self._lock:
                self._clients.add(client)
        return client

    def _send(self, request: Request) -> Any:
        kwargs = request.kwargs_for("http", self._headers)
        with request.mapped(self.endpoint):
            return getattr(self._client(), request.method)(**kwargs)

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients), weakref.WeakSet()
        for client in clients:
            client.close()


def open_transport(endpoint: Endpoint) -> Transport:
    """The transport for ``endpoint.protocol``."""
    if endpoint.protocol == "grpc":
        return GrpcTransport(endpoint)
    return HttpTransport(endpoint)
