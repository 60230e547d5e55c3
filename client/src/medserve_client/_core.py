"""Protocol-free logic shared by Client and AsyncClient: URLs, model facts, batches, results.

Usage::

    hostport, protocol, ssl = parse_url("https://triton.example.org", protocol=None)
    for batch in split_batches(range(130), info.max_batch_size):  # [0..63], [64..127], [128, 129]
        ...
    predictions = to_predictions(probabilities, info=info, top_k=2, model_version="1",
                                 latency_ms=3.2)

Nothing here does I/O; the clients feed it what the server answered. Reading
the server's metadata and config is the served contract's
(:mod:`medserve_client.contract`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from medserve_client._errors import InferenceError, InvalidInputError
from medserve_client._models import TLS, ModelInfo, Prediction, Timeout
from medserve_client._targets import check_lb_policy, parse_target, resolver_scheme
from medserve_client._transport import Endpoint, InferCall, OutputSpec
from medserve_client.contract import ADMIN_KEY_HEADER, GRPC_RESTRICTED_PREFIX, EncodedEntry

T = TypeVar("T")

_DEFAULT_PORTS = {"grpc": 8001, "http": 8000}
_SCHEMES = {
    "grpc": ("grpc", False),
    "grpcs": ("grpc", True),
    "http": ("http", False),
    "https": ("http", True),
}


def parse_url(url: str, protocol: str | None) -> tuple[str, str, bool]:
    """Split a URL into ``(host:port, protocol, ssl)``.

    ``grpc://``, ``grpcs://``, ``http://`` and ``https://`` choose the
    protocol and TLS; without a scheme, ``protocol`` (default ``"grpc"``)
    does. A missing port becomes Triton's default for the protocol. gRPC's
    own targets (``dns:///host:port``, ``ipv4:addr:port,addr:port``,
    ``ipv6:[addr]:port,...``) are gRPC, checked by
    :func:`~medserve_client._targets.parse_target`, and returned whole as
    the channel's target (TLS is then turned on by ``tls=``).

    Raises:
        InvalidInputError: Unknown scheme or protocol, or a scheme that contradicts it.
    """
    ssl = False
    rest = url.strip()
    if resolver_scheme(rest) is not None:
        # gRPC's own target forms: the channel resolves them and balances.
        if protocol not in (None, "grpc"):
            raise InvalidInputError(
                f"URL {url!r} is a gRPC target (dns:, ipv4:, ipv6:) but protocol={protocol!r} "
                "was given: HTTP cannot balance per request; use gRPC, or an HTTP address "
                "(a Service or an Ingress) that balances for you"
            )
        return parse_target(rest, default_port=_DEFAULT_PORTS["grpc"]).uri, "grpc", False
    if "://" in rest:
        scheme, rest = rest.split("://", 1)
        if scheme.lower() not in _SCHEMES:
            raise InvalidInputError(
                f"URL scheme {scheme!r} is not supported: use grpc://, grpcs://, http://, "
                "https://, or a gRPC target: dns:///HOST:PORT, ipv4:ADDR:PORT,ADDR:PORT"
            )
        implied, ssl = _SCHEMES[scheme.lower()]
        if protocol is not None and protocol != implied:
            raise InvalidInputError(
                f"URL {url!r} implies protocol {implied!r} but protocol={protocol!r} was given"
            )
        protocol = implied
    protocol = protocol or "grpc"
    if protocol not in _DEFAULT_PORTS:
        raise InvalidInputError(f"protocol must be 'grpc' or 'http', got {protocol!r}")
    rest = rest.rstrip("/")
    if not rest:
        raise InvalidInputError(f"URL {url!r} has no host")
    host_part = rest.split("/", 1)[0]
    if ":" not in host_part.rsplit("]", 1)[-1]:
        rest = rest.replace(host_part, f"{host_part}:{_DEFAULT_PORTS[protocol]}", 1)
    return rest, protocol, ssl


def split_batches(items: Sequence[T], max_batch_size: int) -> list[Sequence[T]]:
    """Consecutive slices of at most ``max_batch_size`` items (all of them if it is 0)."""
    if max_batch_size <= 0:
        return [items] if items else []
    return [items[start : start + max_batch_size] for start in range(0, len(items), max_batch_size)]


def to_predictions(
    probabilities: npt.NDArray[Any],
    *,
    info: ModelInfo,
    top_k: int,
    model_version: str,
    latency_ms: float,
    model_name: str | None = None,
) -> list[Prediction]:
    """One :class:`Prediction` per row of a ``(n, classes)`` probability matrix."""
    matrix = np.asarray(probabilities, dtype=np.float32)
    matrix = matrix.reshape(matrix.shape[0], -1)
    if matrix.shape[1] != info.num_classes:
        raise InferenceError(
            f"model {info.name!r} returned {matrix.shape[1]} scores for {info.num_classes} labels"
        )
    k = min(top_k, info.num_classes)
    results = []
    for row in matrix:
        vector = row.copy()
        vector.setflags(write=False)
        # Stable sort so equal scores keep label order (deterministic top-k).
        order = np.argsort(-vector, kind="stable")[:k]
        pairs = tuple((info.labels[i], float(vector[i])) for i in order)
        results.append(
            Prediction(
                label=pairs[0][0],
                score=pairs[0][1],
                top_k=pairs,
                probabilities=vector,
                model_name=model_name or info.name,
                model_version=model_version or info.version,
                latency_ms=latency_ms,
            )
        )
    return results


def check_top_k(top_k: int) -> int:
    """Validate ``top_k`` (at least 1)."""
    if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
        raise InvalidInputError(f"top_k must be an integer >= 1, got {top_k!r}")
    return top_k


def as_list(inputs: Any) -> tuple[list[Any], bool]:
    """Normalise ``inputs`` to a list; the flag says whether one input was given.

    One input is a path, bytes, a PIL image, a dataset, a DicomSource or a
    numpy array of rank 2 or 3; a 4-D array is a batch; lists and tuples are many.
    """
    if isinstance(inputs, np.ndarray):
        return (list(inputs), False) if inputs.ndim == 4 else ([inputs], True)
    if isinstance(inputs, list | tuple):
        return list(inputs), False
    if isinstance(inputs, Iterable) and not isinstance(inputs, str | bytes | bytearray):
        if type(inputs).__module__.startswith(("PIL", "pydicom")):
            return [inputs], True
        return list(inputs), False
    return [inputs], True


def build_endpoint(
    url: str,
    *,
    protocol: str | None,
    timeout_s: float | Timeout | None,
    tls: TLS | None,
    headers: Mapping[str, str] | None,
    bearer_token: str | None,
    admin_key: str | None = None,
    load_balancing: str | None = None,
) -> Endpoint:
    """The :class:`Endpoint` both clients build from their constructor arguments."""
    hostport, chosen, ssl = parse_url(url, protocol)
    if load_balancing is not None:
        check_lb_policy(load_balancing)
        if chosen != "grpc":
            raise InvalidInputError(
                "load_balancing is a gRPC channel setting; over HTTP the Service or "
                "Ingress in front of the servers balances"
            )
    elif chosen == "grpc" and resolver_scheme(hostport) is not None:
        # A target that names many servers is balanced per request by default;
        # gRPC's own default (pick_first) would pin every call to one of them.
        load_balancing = "round_robin"
    _check_server_name(hostport, chosen, tls)
    merged = dict(headers or {})
    if bearer_token is not None:
        if not bearer_token.strip():
            raise InvalidInputError("bearer_token is empty")
        merged["authorization"] = f"Bearer {bearer_token}"
    admin: dict[str, str] = {}
    if admin_key is not None:
        if not admin_key.strip():
            raise InvalidInputError("admin_key is empty")
        # Triton's --grpc-restricted-protocol reads the header with this prefix.
        prefix = GRPC_RESTRICTED_PREFIX if chosen == "grpc" else ""
        admin[prefix + ADMIN_KEY_HEADER] = admin_key
    for key, value in {**merged, **admin}.items():
        if not isinstance(key, str) or not isinstance(value, str) or "\n" in key + value:
            raise InvalidInputError(f"header {key!r} must be a one-line string with a string value")
    return Endpoint(
        url=hostport,
        protocol=chosen,
        ssl=ssl or tls is not None,
        tls=tls,
        headers=merged,
        timeout=Timeout.coerce(timeout_s),
        admin_headers=admin,
        load_balancing=load_balancing,
    )


def _check_server_name(target: str, protocol: str, tls: TLS | None) -> None:
    """Refuse TLS settings that cannot verify the servers a target names."""
    if tls is None:
        return
    if tls.server_name is not None and protocol != "grpc":
        raise InvalidInputError("TLS.server_name is for gRPC; HTTPS checks the URL's host")
    if tls.server_name is None and resolver_scheme(target) in ("ipv4", "ipv6") and "," in target:
        # gRPC would check every certificate against the whole address list
        # and fail the handshake on each server: say so before connecting.
        raise InvalidInputError(
            f"TLS to the address list {target!r} needs TLS(server_name=...): the name on "
            "the servers' certificates (the addresses are not it)"
        )


def label_probe(info_shape: tuple[int, int, int], batched: bool) -> npt.NDArray[np.uint8]:
    """A black image: the one request that reads the labels through classification."""
    shape = ((1,) if batched else ()) + info_shape
    return np.zeros(shape, dtype=np.uint8)


def stack_batch(tensors: Sequence[npt.NDArray[np.uint8]], batched: bool) -> npt.NDArray[Any]:
    """A request tensor: stacked along a batch axis, or the single image when unbatched."""
    if batched and len(tensors) == 1:
        # One image (classify_many's requests): a view with a batch axis, not a copy.
        return np.ascontiguousarray(tensors[0])[np.newaxis]
    if batched:
        return np.ascontiguousarray(np.stack(tensors))
    return np.ascontiguousarray(tensors[0])


def bytes_batch(payloads: Sequence[bytes], batched: bool) -> npt.NDArray[np.object_]:
    """A BYTES request tensor ``[n, 1]`` (``[1]`` when unbatched) of encoded files."""
    array = np.empty((len(payloads), 1), dtype=np.object_)
    for index, payload in enumerate(payloads):
        array[index, 0] = payload
    return array if batched else array[0]


def label_call(info: ModelInfo, *, model: str, version: str, timeout_s: float) -> InferCall:
    """The request that reads the labels: a black image, classification of every class."""
    return InferCall(
        model=model,
        version=version,
        input_name=info.input_name,
        datatype=info.input_datatype,
        array=label_probe(info.input_shape, info.max_batch_size > 0),
        outputs=(OutputSpec(info.output_name, class_count=info.num_classes),),
        timeout_s=timeout_s,
    )


def tensor_call(
    info: ModelInfo, *, model: str, version: str, chunk: Sequence[npt.NDArray[np.uint8]]
) -> InferCall:
    """The request for a chunk of preprocessed images (the deadline is set per attempt)."""
    return InferCall(
        model=model,
        version=version,
        input_name=info.input_name,
        datatype=info.input_datatype,
        array=stack_batch(chunk, info.max_batch_size > 0),
        outputs=(OutputSpec(info.output_name),),
    )


def encoded_call(entry: EncodedEntry, chunk: Sequence[bytes]) -> InferCall:
    """The request for a chunk of encoded files to the ``<model>_encoded`` entry point."""
    return InferCall(
        model=entry.name,
        version="",
        input_name=entry.input_name,
        datatype="BYTES",
        array=bytes_batch(chunk, entry.max_batch_size > 0),
        outputs=(OutputSpec(entry.output_name),),
    )
