"""The asyncio transports: tritonclient.grpc.aio and tritonclient.http.aio.

Usage::

    transport = open_async_transport(Endpoint(url="127.0.0.1:8001", protocol="grpc"))
    try:
        await transport.server_ready(timeout_s=1.0)
    finally:
        await transport.close()

Each call is bounded by the time left before the call's deadline: over gRPC
by the deadline gRPC itself carries and enforces (``client_timeout``), over
HTTP by ``asyncio.wait_for`` (the aio HTTP client has no per-call timeout of
its own); and each runs inside :func:`~medserve_client._transport.mapped`,
the one error boundary.
Both aio clients are used from one event loop, so one instance each is enough.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, Protocol

from medserve_client._models import TLS
from medserve_client._requests import (
    Request,
    WireHeaders,
    config_from,
    grpc_channel_kwargs,
    mapped_connect,
    opt_path,
    read_reply,
)
from medserve_client._transport import Endpoint, InferCall, InferReply


class AsyncTransport(Protocol):
    """The asyncio twin of :class:`~medserve_client._transport.Transport`."""

    endpoint: Endpoint

    async def server_ready(self, *, timeout_s: float) -> bool: ...
    async def model_ready(self, model: str, version: str, *, timeout_s: float) -> bool: ...
    async def model_metadata(
        self, model: str, version: str, *, timeout_s: float
    ) -> dict[str, Any]: ...
    async def model_config(
        self, model: str, version: str, *, timeout_s: float
    ) -> dict[str, Any]: ...
    async def infer(self, call: InferCall) -> InferReply: ...
    async def register_shm(
        self, name: str, key: str, byte_size: int, *, timeout_s: float
    ) -> None: ...
    async def unregister_shm(self, name: str, *, timeout_s: float) -> None: ...
    async def close(self) -> None: ...


class AsyncTritonTransport:
    """Either aio client behind one interface; the differences are in :meth:`_send`."""

    def __init__(self, endpoint: Endpoint) -> None:
        """Create the aio client (it connects on first use)."""
        self.endpoint = endpoint
        tls = endpoint.tls or TLS()
        with mapped_connect(endpoint):
            if endpoint.protocol == "grpc":
                import tritonclient.grpc as module
                import tritonclient.grpc.aio as aio

                self._client: Any = aio.InferenceServerClient(
                    endpoint.url, **grpc_channel_kwargs(endpoint)
                )
            else:
                import tritonclient.http as module
                import tritonclient.http.aio as aio

                ssl_context = None
                if endpoint.ssl:
                    import ssl

                    ssl_context = ssl.create_default_context(cafile=opt_path(tls.root_certificates))
                    if tls.insecure:
                        ssl_context.check_hostname = False
                self._client = aio.InferenceServerClient(
                    endpoint.url,
                    conn_timeout=endpoint.timeout.connect_s,
                    ssl=endpoint.ssl,
                    ssl_context=ssl_context,
                )
        self._headers = WireHeaders.of(endpoint)
        self._module = module

    async def _send(self, request: Request) -> Any:
        kwargs = request.kwargs_for(self.endpoint.protocol, self._headers)
        with request.mapped(self.endpoint):
            awaitable: Awaitable[Any] = getattr(self._client, request.method)(**kwargs)
            if self.endpoint.protocol == "grpc":
                # gRPC enforces the deadline it was given (client_timeout);
                # wait_for would add a task and a timer to every request (profiled).
                return await awaitable
            # The aio HTTP client has no per-call timeout: bound every call here.
            return await asyncio.wait_for(awaitable, timeout=request.timeout_s)

    async def server_ready(self, *, timeout_s: float) -> bool:
        """Whether the server reports ready."""
        return bool(await self._send(Request.server_ready(timeout_s=timeout_s)))

    async def model_ready(self, model: str, version: str, *, timeout_s: float) -> bool:
        """Whether the model (version) reports ready."""
        return bool(await self._send(Request.model_ready(model, version, timeout_s=timeout_s)))

    async def model_metadata(self, model: str, version: str, *, timeout_s: float) -> dict[str, Any]:
        """KServe model metadata as a dict."""
        raw = await self._send(Request.model_metadata(model, version, timeout_s=timeout_s))
        return dict(raw)

    async def model_config(self, model: str, version: str, *, timeout_s: float) -> dict[str, Any]:
        """Triton model config as a dict."""
        raw = await self._send(Request.model_config(model, version, timeout_s=timeout_s))
        return config_from(raw)

    async def infer(self, call: InferCall) -> InferReply:
        """One inference request."""
        return read_reply(await self._send(Request.infer(self._module, call)), call)

    async def register_shm(self, name: str, key: str, byte_size: int, *, timeout_s: float) -> None:
        """Register a system shared-memory region."""
        await self._send(Request.register_shm(name, key, byte_size, timeout_s=timeout_s))

    async def unregister_shm(self, name: str, *, timeout_s: float) -> None:
        """Unregister a system shared-memory region."""
        await self._send(Request.unregister_shm(name, timeout_s=timeout_s))

    async def close(self) -> None:
        """Close the aio client."""
        await self._client.close()


def open_async_transport(endpoint: Endpoint) -> AsyncTransport:
    """The asyncio transport for ``endpoint.protocol``."""
    return AsyncTritonTransport(endpoint)
