"""What each transport method asks tritonclient, independent of protocol and of asyncio.

Usage::

    request = Request.model_config("medcnn", "", timeout_s=5.0)
    with request.mapped(endpoint):
        raw = getattr(grpc_client, request.method)(**request.kwargs_for("grpc", headers=None))
    config = config_from(raw)

The four tritonclient clients (gRPC and HTTP, blocking and aio) name their
methods alike and take the same core arguments; :meth:`Request.kwargs_for`
adds what one protocol needs on top. The transports in ``_sync_transports`` and
``_async_transports`` only send a :class:`Request` and read its answer with the
helpers here, so a change to a call is made once for all four.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from medserve_client._core import build_endpoint
from medserve_client._errors import InferenceError
from medserve_client._models import TLS
from medserve_client._transport import Endpoint, InferCall, InferReply, grpc_headers, mapped


@dataclass(frozen=True, kw_only=True)
class Request:
    """One :class:`~medserve_client._transport.Transport` method as a tritonclient call.

    Build one with the constructor named after the transport method
    (``Request.model_config(...)``), then call ``request.method`` with
    :meth:`kwargs_for` inside :meth:`mapped`.

    Attributes:
        action: What is attempted, named in error messages.
        method: The ``InferenceServerClient`` method (the same name in all four clients).
        model: The model concerned, if any, named in error messages.
        timeout_s: The deadline of the call.
        kwargs: The method's arguments common to both protocols.
        json: Ask gRPC for the JSON form of the answer (HTTP answers JSON anyway).
        admin: An admin API call: it carries the endpoint's admin headers (the key).
    """

    action: str
    method: str
    model: str | None = None
    timeout_s: float
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    json: bool = False
    admin: bool = False

    @classmethod
    def server_ready(cls, *, timeout_s: float) -> Request:
        """Ask whether the server is ready."""
        return cls(action="server ready", method="is_server_ready", timeout_s=timeout_s)

    @classmethod
    def model_ready(cls, model: str, version: str, *, timeout_s: float) -> Request:
        """Ask whether a model (version) is ready."""
        return cls._for_model(
            "model ready", "is_model_ready", model, version, timeout_s, json=False
        )

    @classmethod
    def model_metadata(cls, model: str, version: str, *, timeout_s: float) -> Request:
        """Ask for the KServe model metadata."""
        return cls._for_model("model metadata", "get_model_metadata", model, version, timeout_s)

    @classmethod
    def model_config(cls, model: str, version: str, *, timeout_s: float) -> Request:
        """Ask for the Triton model config (read the answer with :func:`config_from`)."""
        return cls._for_model("model config", "get_model_config", model, version, timeout_s)

    @classmethod
    def _for_model(
        cls,
        action: str,
        method: str,
        model: str,
        version: str,
        timeout_s: float,
        *,
        json: bool = True,
    ) -> Request:
        return cls(
            action=action,
            method=method,
            model=model,
            timeout_s=timeout_s,
            kwargs={"model_name": model, "model_version": version},
            json=json,
        )

    @classmethod
    def infer(cls, module: Any, call: InferCall) -> Request:
        """An inference request; ``module`` is ``tritonclient.grpc`` or ``tritonclient.http``.

        Builds the tritonclient inputs and outputs right away, outside the
        error boundary, as the transports always have: a tensor that
        tritonclient refuses fails here, before anything is sent.
        """
        inputs, outputs = build_request(module, call)
        return cls(
            action="infer",
            method="infer",
            model=call.model,
            timeout_s=call.timeout_s,
            kwargs={
                "model_name": call.model,
                "model_version": call.version,
                "inputs": inputs,
                "outputs": outputs,
            },
        )

    @classmethod
    def register_shm(cls, name: str, key: str, byte_size: int, *, timeout_s: float) -> Request:
        """Register a system shared-memory region."""
        return cls(
            action="register shared memory",
            admin=True,
            method="register_system_shared_memory",
            timeout_s=timeout_s,
            kwargs={"name": name, "key": key, "byte_size": byte_size},
        )

    @classmethod
    def unregister_shm(cls, name: str, *, timeout_s: float) -> Request:
        """Unregister a system shared-memory region."""
        return cls(
            action="unregister shared memory",
            admin=True,
            method="unregister_system_shared_memory",
            timeout_s=timeout_s,
            kwargs={"name": name},
        )

    def kwargs_for(self, protocol: str, headers: WireHeaders) -> dict[str, Any]:
        """The keyword arguments of :attr:`method` for the ``protocol``'s client."""
        kwargs = {"headers": headers.admin if self.admin else headers.plain, **self.kwargs}
        if protocol == "grpc":
            # Only the gRPC clients take a per-call deadline; the HTTP ones are
            # bounded by their network timeout (blocking) or asyncio.wait_for (aio).
            kwargs["client_timeout"] = self.timeout_s
            if self.json:
                kwargs["as_json"] = True
        return kwargs

    def mapped(self, endpoint: Endpoint) -> AbstractContextManager[None]:
        """The error boundary (:func:`~medserve_client._transport.mapped`) of this call."""
        return mapped(endpoint, model=self.model, timeout_s=self.timeout_s, action=self.action)


def mapped_connect(endpoint: Endpoint) -> AbstractContextManager[None]:
    """:func:`~medserve_client._transport.mapped` around creating a tritonclient client."""
    return mapped(endpoint, model=None, timeout_s=endpoint.timeout.connect_s, action="connect")


@dataclass(frozen=True)
class WireHeaders:
    """A transport's headers: for every call, and for admin calls (with the admin key)."""

    plain: dict[str, str] | None
    admin: dict[str, str] | None

    @classmethod
    def of(cls, endpoint: Endpoint) -> WireHeaders:
        """Both header sets of ``endpoint``, as its protocol's client takes them."""
        return cls(plain=wire_headers(endpoint), admin=wire_headers(endpoint, admin=True))


def wire_headers(endpoint: Endpoint, *, admin: bool = False) -> dict[str, str] | None:
    """The endpoint's headers as the protocol's client takes them (``None`` for none).

    With ``admin``, the admin headers (the key) are added: only admin calls carry them.
    """
    headers = {**endpoint.headers, **(endpoint.admin_headers if admin else {})}
    if endpoint.protocol == "grpc":
        return grpc_headers(headers)
    return headers or None


# gRPC waits up to 120 s between reconnection attempts by default (1 s growing
# by 1.6x), so after an outage of ~20 s a channel could stay down well past the
# server's return and past the call's deadline: the retries would all fail fast
# with UNAVAILABLE. Capped, a restarted server is noticed within about a second.
GRPC_RECONNECT_BACKOFF_MS = {
    "grpc.initial_reconnect_backoff_ms": 100,
    "grpc.max_reconnect_backoff_ms": 1000,
}


def grpc_channel_args() -> list[tuple[str, Any]]:
    """Channel options of both gRPC clients: tritonclient's own, plus a capped reconnect backoff.

    tritonclient uses either its defaults or ``channel_args``, never both, so
    its defaults (message size, keepalive) are restated here from its own values.
    """
    from tritonclient.grpc import MAX_GRPC_MESSAGE_SIZE, KeepAliveOptions

    keepalive = KeepAliveOptions()
    return [
        ("grpc.max_send_message_length", MAX_GRPC_MESSAGE_SIZE),
        ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE_SIZE),
        ("grpc.keepalive_time_ms", keepalive.keepalive_time_ms),
        ("grpc.keepalive_timeout_ms", keepalive.keepalive_timeout_ms),
        ("grpc.keepalive_permit_without_calls", keepalive.keepalive_permit_without_calls),
        ("grpc.http2.max_pings_without_data", keepalive.http2_max_pings_without_data),
        *GRPC_RECONNECT_BACKOFF_MS.items(),
    ]


def grpc_balancing_args(endpoint: Endpoint) -> list[tuple[str, Any]]:
    """Channel options of the endpoint's load-balancing policy and TLS server name.

    The policy goes in the channel's default service config, gRPC's documented
    way (``loadBalancingConfig``); a service config the resolver itself
    returns would still win, as gRPC intends.
    """
    args: list[tuple[str, Any]] = []
    if endpoint.load_balancing is not None:
        config: dict[str, Any] = {"loadBalancingConfig": [{endpoint.load_balancing: {}}]}
        args.append(("grpc.service_config", json.dumps(config)))
    tls = endpoint.tls
    if endpoint.ssl and tls is not None and tls.server_name is not None:
        # The name checked against the servers' certificates (and sent as SNI)
        # when the target names no host: ipv4:/ipv6: lists.
        args.append(("grpc.ssl_target_name_override", tls.server_name))
    return args


def grpc_channel_kwargs(endpoint: Endpoint) -> dict[str, Any]:
    """TLS and channel arguments of both gRPC clients' ``InferenceServerClient``.

    tritonclient hands the URL to ``grpc.insecure_channel`` / ``secure_channel``
    as the target, unparsed, so gRPC's resolver targets (``dns:///...``,
    ``ipv4:...``) reach the channel as they are.
    """
    tls = endpoint.tls or TLS()
    return {
        "ssl": endpoint.ssl,
        "root_certificates": opt_path(tls.root_certificates),
        "private_key": opt_path(tls.private_key),
        "certificate_chain": opt_path(tls.certificate_chain),
        "channel_args": grpc_channel_args() + grpc_balancing_args(endpoint),
    }


def grpc_client_kwargs(
    url: str, *, tls: TLS | None = None, load_balancing: str | None = None
) -> dict[str, Any]:
    """``InferenceServerClient(**kwargs)`` arguments that dial ``url`` as the SDK's clients do.

    For code that must call tritonclient itself (the locust scenario times
    each ``infer``): the same URL rules (``grpc://``, ``grpcs://``, ``dns:///``,
    ``ipv4:`` lists, default port) and the same channel options, including
    ``round_robin`` for a target that names many servers.

    Raises:
        InvalidInputError: ``url`` is no gRPC address or target, or the policy is unknown.
    """
    endpoint = build_endpoint(
        url,
        protocol="grpc",
        timeout_s=None,
        tls=tls,
        headers=None,
        bearer_token=None,
        load_balancing=load_balancing,
    )
    return {"url": endpoint.url, **grpc_channel_kwargs(endpoint)}


def opt_path(value: object) -> str | None:
    """A path as the ``str`` tritonclient expects, or ``None``."""
    return None if value is None else str(value)


def build_request(module: Any, call: InferCall) -> tuple[list[Any], list[Any]]:
    """tritonclient ``InferInput``/``InferRequestedOutput`` lists for ``module`` (grpc or http)."""
    shape = list(call.array.shape if call.array is not None else call.shape)
    infer_input = module.InferInput(call.input_name, shape, call.datatype)
    if call.shm_region is not None:
        infer_input.set_shared_memory(call.shm_region, call.shm_byte_size)
    elif call.array is not None:
        infer_input.set_data_from_numpy(call.array)
    inputs = [infer_input]
    for name, datatype, array in call.extra_inputs:
        extra = module.InferInput(name, list(array.shape), datatype)
        extra.set_data_from_numpy(array)
        inputs.append(extra)
    outputs = []
    for spec in call.outputs:
        output = module.InferRequestedOutput(spec.name, class_count=spec.class_count)
        if spec.shm_region is not None:
            output.set_shared_memory(spec.shm_region, spec.shm_byte_size, spec.shm_offset)
        outputs.append(output)
    return inputs, outputs


def read_reply(result: Any, call: InferCall) -> InferReply:
    """Outputs as numpy (those not in shared memory) and the answering version."""
    outputs: dict[str, npt.NDArray[Any]] = {}
    for spec in call.outputs:
        if spec.shm_region is None:
            value = result.as_numpy(spec.name)
            if value is None:
                raise InferenceError(f"the server's reply lacks output {spec.name!r}")
            outputs[spec.name] = np.asarray(value)
    response = result.get_response()
    version = (
        response.get("model_version", "")
        if isinstance(response, dict)
        else (response.model_version)
    )
    return InferReply(outputs=outputs, model_version=str(version))


def config_from(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The model config from a config answer (gRPC's JSON form wraps it in ``config``)."""
    return dict(raw.get("config", raw))
