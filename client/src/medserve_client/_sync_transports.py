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
closes them all on :meth:`~HttpTransport.close`. Every call runs inside
:func:`~medserve_client._transport.mapped`, the one error boundary.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

from medserve_client._models import TLS
from medserve_client._transport import (
    Endpoint,
    InferCall,
    InferReply,
    Transport,
    build_request,
    grpc_headers,
    mapped,
    read_reply,
)


class GrpcTransport:
    """tritonclient.grpc: one channel shared by every thread (unary calls are thread-safe)."""

    def __init__(self, endpoint: Endpoint) -> None:
        import tritonclient.grpc as grpcclient

        self.endpoint = endpoint
        self._module = grpcclient
        tls = endpoint.tls or TLS()
        with mapped(endpoint, model=None, timeout_s=endpoint.timeout.connect_s, action="connect"):
            self._client = grpcclient.InferenceServerClient(
                endpoint.url,
                ssl=endpoint.ssl,
                root_certificates=_opt_path(tls.root_certificates),
                private_key=_opt_path(tls.private_key),
                certificate_chain=_opt_path(tls.certificate_chain),
            )
        self._headers = grpc_headers(endpoint.headers)

    def _call(self, action: str, model: str | None, timeout_s: float, fn: Any, **kw: Any) -> Any:
        with mapped(self.endpoint, model=model, timeout_s=timeout_s, action=action):
            return fn(headers=self._headers, client_timeout=timeout_s, **kw)

    def server_ready(self, *, timeout_s: float) -> bool:
        return bool(self._call("server ready", None, timeout_s, self._client.is_server_ready))

    def model_ready(self, model: str, version: str, *, timeout_s: float) -> bool:
        return bool(
            self._call(
                "model ready",
                model,
                timeout_s,
                self._client.is_model_ready,
                model_name=model,
                model_version=version,
            )
        )

    def model_metadata(self, model: str, version: str, *, timeout_s: float) -> dict[str, Any]:
        return dict(
            self._call(
                "model metadata",
                model,
                timeout_s,
                self._client.get_model_metadata,
                model_name=model,
                model_version=version,
                as_json=True,
            )
        )

    def model_config(self, model: str, version: str, *, timeout_s: float) -> dict[str, Any]:
        raw = self._call(
            "model config",
            model,
            timeout_s,
            self._client.get_model_config,
            model_name=model,
            model_version=version,
            as_json=True,
        )
        return dict(raw.get("config", raw))

    def infer(self, call: InferCall) -> InferReply:
        inputs, outputs = build_request(self._module, call)
        result = self._call(
            "infer",
            call.model,
            call.timeout_s,
            self._client.infer,
            model_name=call.model,
            model_version=call.version,
            inputs=inputs,
            outputs=outputs,
        )
        return read_reply(result, call)

    def register_shm(self, name: str, key: str, byte_size: int, *, timeout_s: float) -> None:
        self._call(
            "register shared memory",
            None,
            timeout_s,
            self._client.register_system_shared_memory,
            name=name,
            key=key,
            byte_size=byte_size,
        )

    def unregister_shm(self, name: str, *, timeout_s: float) -> None:
        self._call(
            "unregister shared memory",
            None,
            timeout_s,
            self._client.unregister_system_shared_memory,
            name=name,
        )

    def statistics(self, model: str, *, timeout_s: float) -> dict[str, Any]:
        return dict(
            self._call(
                "statistics",
                model,
                timeout_s,
                self._client.get_inference_statistics,
                model_name=model,
                as_json=True,
            )
        )

    def close(self) -> None:
        self._client.close()


class HttpTransport:
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
        self._headers = dict(endpoint.headers) or None

    def _client(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            tls = self.endpoint.tls or TLS()
            ssl_options = {}
            if tls.root_certificates is not None:
                ssl_options["ca_certs"] = str(tls.root_certificates)
            with mapped(
                self.endpoint,
                model=None,
                timeout_s=self.endpoint.timeout.connect_s,
                action="connect",
            ):
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

    def _call(
        self, action: str, model: str | None, timeout_s: float, method: str, **kw: Any
    ) -> Any:
        with mapped(self.endpoint, model=model, timeout_s=timeout_s, action=action):
            return getattr(self._client(), method)(headers=self._headers, **kw)

    def server_ready(self, *, timeout_s: float) -> bool:
        return bool(self._call("server ready", None, timeout_s, "is_server_ready"))

    def model_ready(self, model: str, version: str, *, timeout_s: float) -> bool:
        return bool(
            self._call(
                "model ready",
                model,
                timeout_s,
                "is_model_ready",
                model_name=model,
                model_version=version,
            )
        )

    def model_metadata(self, model: str, version: str, *, timeout_s: float) -> dict[str, Any]:
        return dict(
            self._call(
                "model metadata",
                model,
                timeout_s,
                "get_model_metadata",
                model_name=model,
                model_version=version,
            )
        )

    def model_config(self, model: str, version: str, *, timeout_s: float) -> dict[str, Any]:
        return dict(
            self._call(
                "model config",
                model,
                timeout_s,
                "get_model_config",
                model_name=model,
                model_version=version,
            )
        )

    def infer(self, call: InferCall) -> InferReply:
        inputs, outputs = build_request(self._module, call)
        result = self._call(
            "infer",
            call.model,
            call.timeout_s,
            "infer",
            model_name=call.model,
            model_version=call.version,
            inputs=inputs,
            outputs=outputs,
        )
        return read_reply(result, call)

    def register_shm(self, name: str, key: str, byte_size: int, *, timeout_s: float) -> None:
        self._call(
            "register shared memory",
            None,
            timeout_s,
            "register_system_shared_memory",
            name=name,
            key=key,
            byte_size=byte_size,
        )

    def unregister_shm(self, name: str, *, timeout_s: float) -> None:
        self._call(
            "unregister shared memory",
            None,
            timeout_s,
            "unregister_system_shared_memory",
            name=name,
        )

    def statistics(self, model: str, *, timeout_s: float) -> dict[str, Any]:
        return dict(
            self._call("statistics", model, timeout_s, "get_inference_statistics", model_name=model)
        )

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients), weakref.WeakSet()
        for client in clients:
            client.close()


def _opt_path(value: object) -> str | None:
    return None if value is None else str(value)


def open_transport(endpoint: Endpoint) -> Transport:
    """The transport for ``endpoint.protocol``."""
    if endpoint.protocol == "grpc":
        return GrpcTransport(endpoint)
    return HttpTransport(endpoint)
