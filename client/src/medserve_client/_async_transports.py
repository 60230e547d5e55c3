"""The asyncio transports: tritonclient.grpc.aio and tritonclient.http.aio.

Usage::

    transport = open_async_transport(Endpoint(url="127.0.0.1:8001", protocol="grpc"))
    try:
        await transport.server_ready(timeout_s=1.0)
    finally:
        await transport.close()

Each call runs under ``asyncio.wait_for`` with the time left before the
call's deadline (the aio HTTP client has no per-call timeout of its own) and
inside :func:`~medserve_client._transport.mapped`, the one error boundary.
Both aio clients are used from one event loop, so one instance each is enough.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, Protocol

from medserve_client._models import TLS
from medserve_client._transport import (
    Endpoint,
    InferCall,
    InferReply,
    build_request,
    grpc_headers,
    mapped,
    read_reply,
)


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
    """Either aio client behind one interface; the differences are in ``_kwargs``."""

    def __init__(self, endpoint: Endpoint) -> None:
        """Create the aio client (it connects on first use)."""
        self.endpoint = endpoint
        tls = endpoint.tls or TLS()
        with mapped(endpoint, model=None, timeout_s=endpoint.timeout.connect_s, action="connect"):
            if endpoint.protocol == "grpc":
                import tritonclient.grpc as module
                import tritonclient.grpc.aio as aio

                self._client: Any = aio.InferenceServerClient(
                    endpoint.url,
                    ssl=endpoint.ssl,
                    root_certificates=_opt(tls.root_certificates),
                    private_key=_opt(tls.private_key),
                    certificate_chain=_opt(tls.certificate_chain),
                )
                self._headers: dict[str, str] | None = grpc_headers(endpoint.headers)
            else:
                import tritonclient.http as module
                import tritonclient.http.aio as aio

                ssl_context = None
                if endpoint.ssl:
                    import ssl

                    ssl_context = ssl.create_default_context(cafile=_opt(tls.root_certificates))
                    if tls.insecure:
                        ssl_context.check_hostname = False
                self._client = aio.InferenceServerClient(
                    endpoint.url,
                    conn_timeout=endpoint.timeout.connect_s,
                    ssl=endpoint.ssl,
                    ssl_context=ssl_context,
                )
                self._headers = dict(endpoint.headers) or None
        self._module = module

    async def _call(
        self, action: str, model: str | None, timeout_s: float, make: Any, **kw: Any
    ) -> Any:
        if self.endpoint.protocol == "grpc":
            kw["client_timeout"] = timeout_s
        with mapped(self.endpoint, model=model, timeout_s=timeout_s, action=action):
            awaitable: Awaitable[Any] = make(headers=self._headers, **kw)
            return await asyncio.wait_for(awaitable, timeout=timeout_s)

    async def server_ready(self, *, timeout_s: float) -> bool:
        """Whether the server reports ready."""
        return bool(await self._call("server ready", None, timeout_s, self._client.is_server_ready))

    async def model_ready(self, model: str, version: str, *, timeout_s: float) -> bool:
        """Whether the model (version) reports ready."""
        ready = await self._call(
            "model ready",
            model,
            timeout_s,
            self._client.is_model_ready,
            model_name=model,
            model_version=version,
        )
        return bool(ready)

    async def model_metadata(self, model: str, version: str, *, timeout_s: float) -> dict[str, Any]:
        """KServe model metadata as a dict."""
        kw: dict[str, Any] = {"as_json": True} if self.endpoint.protocol == "grpc" else {}
        raw = await self._call(
            "model metadata",
            model,
            timeout_s,
            self._client.get_model_metadata,
            model_name=model,
            model_version=version,
            **kw,
        )
        return dict(raw)

    async def model_config(self, model: str, version: str, *, timeout_s: float) -> dict[str, Any]:
        """Triton model config as a dict."""
        kw: dict[str, Any] = {"as_json": True} if self.endpoint.protocol == "grpc" else {}
        raw = await self._call(
            "model config",
            model,
            timeout_s,
            self._client.get_model_config,
            model_name=model,
            model_version=version,
            **kw,
        )
        return dict(raw.get("config", raw))

    async def infer(self, call: InferCall) -> InferReply:
        """One inference request."""
        inputs, outputs = build_request(self._module, call)
        result = await self._call(
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

    async def register_shm(self, name: str, key: str, byte_size: int, *, timeout_s: float) -> None:
        """Register a system shared-memory region."""
        await self._call(
            "register shared memory",
            None,
            timeout_s,
            self._client.register_system_shared_memory,
            name=name,
            key=key,
            byte_size=byte_size,
        )

    async def unregister_shm(self, name: str, *, timeout_s: float) -> None:
        """Unregister a system shared-memory region."""
        await self._call(
            "unregister shared memory",
            None,
            timeout_s,
            self._client.unregister_system_shared_memory,
            name=name,
        )

    async def close(self) -> None:
        """Close the aio client."""
        await self._client.close()


def _opt(value: object) -> str | None:
    return None if value is None else str(value)


def open_async_transport(endpoint: Endpoint) -> AsyncTransport:
    """The asyncio transport for ``endpoint.protocol``."""
    return AsyncTritonTransport(endpoint)
