"""The client's transport interface: what a fake or a custom wire must implement.

Usage::

    from medserve_client import Client
    from medserve_client.testing import MockTransport
    from medserve_client.transport import InferCall, Transport

    transport: Transport = MockTransport()
    client = Client("triton:8001", transport=transport)

:class:`Transport` (blocking, for :class:`~medserve_client.Client`) and
:class:`AsyncTransport` (asyncio, for :class:`~medserve_client.AsyncClient`)
have the same eight methods: readiness, model metadata and config, one
inference request (:class:`InferCall` in, :class:`InferReply` out), shared
memory registration, close. A transport maps its own errors to
:mod:`medserve_client.exceptions` (the real ones do so with
``medserve_client.transport.mapped``). The client builds every request and
reads every answer itself; a transport only carries them.
:func:`grpc_client_kwargs` gives code that calls ``tritonclient.grpc`` itself
the SDK's URL rules and channel options (``dns:///``/``ipv4:`` targets balanced
``round_robin``).
"""

from medserve_client._async_transports import AsyncTransport
from medserve_client._requests import grpc_client_kwargs
from medserve_client._transport import (
    Endpoint,
    InferCall,
    InferReply,
    OutputSpec,
    Transport,
    mapped,
)

__all__ = [
    "AsyncTransport",
    "Endpoint",
    "InferCall",
    "InferReply",
    "OutputSpec",
    "Transport",
    "grpc_client_kwargs",
    "mapped",
]
