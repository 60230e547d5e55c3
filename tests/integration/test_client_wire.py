"""What the clients put on the wire, read by recording proxies in front of the real Triton.

The gRPC proxy is a real gRPC server that forwards every call, byte for byte,
to the session's ``tritonserver`` and records what arrived: the method, the
metadata (headers), the deadline left when it arrived, and the request
message. The HTTP proxy relays TCP bytes both ways and keeps what the client
sent. The answers are Triton's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np
import pytest
from tritonclient.grpc import service_pb2

from medserve.spec import ModelSpec
from medserve_client import AsyncClient, Client

pytestmark = pytest.mark.integration

HEADERS = {"x-request-id": "wire-test-7"}
TOKEN = "wire-test-token"
TIMEOUT_S = 20.0
# gRPC sends the deadline as a grpc-timeout header of at most 8 digits, rounded
# up to a coarser unit: 20 s can arrive as a little more.
DEADLINE_ENCODING_S = 0.2


@dataclass(frozen=True)
class Arrived:
    """One call as it reached the proxy."""

    method: str
    metadata: dict[str, str]
    time_remaining_s: float | None
    request: bytes


class RecordingProxy(grpc.GenericRpcHandler):
    """Forwards unary calls to ``target`` unchanged and records each one."""

    def __init__(self, target: str) -> None:
        self.calls: list[Arrived] = []
        self._lock = threading.Lock()
        self._channel = grpc.insecure_channel(target)
        self._server = grpc.server(ThreadPoolExecutor(max_workers=8))
        self._server.add_generic_rpc_handlers([self])
        self.port = self._server.add_insecure_port("127.0.0.1:0")

    def service(self, handler_call_details: Any) -> grpc.RpcMethodHandler:
        method = handler_call_details.method

        def forward(request: bytes, context: grpc.ServicerContext) -> bytes:
            metadata = {key: str(value) for key, value in context.invocation_metadata()}
            remaining = context.time_remaining()
            with self._lock:
                self.calls.append(Arrived(method, metadata, remaining, request))
            passed = [(k, v) for k, v in metadata.items() if k in ("authorization", *HEADERS)]
            call = self._channel.unary_unary(method)
            try:
                return call(request, timeout=remaining, metadata=passed)
            except grpc.RpcError as exc:
                context.abort(exc.code(), exc.details() or "")
                raise

        # No (de)serializers: the proxy passes the serialized messages as they are.
        return grpc.unary_unary_rpc_method_handler(forward)

    def __enter__(self) -> RecordingProxy:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop(grace=None)
        self._channel.close()

    def infers(self) -> list[tuple[Arrived, Any]]:
        """The ModelInfer calls with their parsed requests."""
        return [
            (call, service_pb2.ModelInferRequest.FromString(call.request))
            for call in self.calls
            if call.method.endswith("/ModelInfer")
        ]


@pytest.fixture
def proxy(local_triton: Any) -> Iterator[RecordingProxy]:
    with RecordingProxy(local_triton.grpc_url.split("://")[-1]) as running:
        yield running


def _classify_blocking(url: str, images: list[np.ndarray]) -> None:
    with Client(
        url, version="1", headers=HEADERS, bearer_token=TOKEN, timeout_s=TIMEOUT_S, retries=0
    ) as client:
        client.classify(images)


def _classify_async(url: str, images: list[np.ndarray]) -> None:
    async def run() -> None:
        async with AsyncClient(
            url, version="1", headers=HEADERS, bearer_token=TOKEN, timeout_s=TIMEOUT_S, retries=0
        ) as client:
            await client.classify(images)

    asyncio.run(run())


@pytest.mark.parametrize(
    "classify", [_classify_blocking, _classify_async], ids=["blocking", "async"]
)
def test_every_call_carries_the_headers_the_token_the_deadline_and_the_pinned_version(
    proxy: RecordingProxy,
    served_spec: ModelSpec,
    classify: Callable[[str, list[np.ndarray]], None],
) -> None:
    rng = np.random.default_rng(11)
    images = [rng.integers(0, 256, size=served_spec.input_shape, dtype=np.uint8) for _ in range(3)]
    classify(f"grpc://127.0.0.1:{proxy.port}", images)

    assert proxy.calls, "nothing reached the proxy"
    for call in proxy.calls:
        assert call.metadata.get("x-request-id") == "wire-test-7", call.method
        assert call.metadata.get("authorization") == f"Bearer {TOKEN}", call.method
    infers = proxy.infers()
    # The label probe, then the three images in one request (max batch 16).
    assert len(infers) == 2
    for call, request in infers:
        assert request.model_name == served_spec.name
        assert request.model_version == "1"
        remaining = call.time_remaining_s
        assert remaining is not None and 0 < remaining <= TIMEOUT_S + DEADLINE_ENCODING_S
    assert [list(request.inputs[0].shape) for _, request in infers][-1] == [
        3,
        *served_spec.input_shape,
    ]


class RecordingTcpProxy:
    """Relays TCP connections to ``target`` and keeps every byte the clients sent."""

    def __init__(self, target: str) -> None:
        host, port = target.rsplit(":", 1)
        self._target = (host, int(port))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._sent: list[bytes] = []
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self._stopping = False

    def _pump(self, source: socket.socket, sink: socket.socket, record: bool) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if record:
                    with self._lock:
                        self._sent.append(data)
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def _accept(self) -> None:
        while not self._stopping:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self._target)
            self._sockets += [client, upstream]
            for args in ((client, upstream, True), (upstream, client, False)):
                thread = threading.Thread(target=self._pump, args=args, daemon=True)
                thread.start()
                self._threads.append(thread)

    def __enter__(self) -> RecordingTcpProxy:
        thread = threading.Thread(target=self._accept, daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping = True
        self._listener.close()
        for sock in self._sockets:
            sock.close()

    def requests(self) -> list[tuple[str, str, dict[str, str]]]:
        """``(method, path, headers)`` of every HTTP request the clients sent."""
        with self._lock:
            sent = b"".join(self._sent)
        found = []
        pattern = rb"(GET|POST) (\S+) HTTP/1\.1\r\n((?:[^\r\n]+\r\n)*)\r\n"
        for match in re.finditer(pattern, sent):
            lines = match.group(3).decode("latin-1").splitlines()
            headers = {k.strip().lower(): v.strip() for k, v in (x.split(":", 1) for x in lines)}
            found.append((match.group(1).decode(), match.group(2).decode(), headers))
        return found


def test_http_requests_carry_the_headers_the_token_and_the_pinned_version(
    local_triton: Any, served_spec: ModelSpec
) -> None:
    images = [np.full(served_spec.input_shape, 90, dtype=np.uint8)]
    with RecordingTcpProxy(local_triton.http_url.split("://")[-1]) as proxy:
        with Client(
            f"http://127.0.0.1:{proxy.port}",
            version="1",
            headers=HEADERS,
            bearer_token=TOKEN,
            timeout_s=TIMEOUT_S,
            retries=0,
        ) as client:
            client.classify(images)
        sent = proxy.requests()

    assert sent, "nothing reached the proxy"
    for _method, path, headers in sent:
        assert headers.get("x-request-id") == "wire-test-7", path
        assert headers.get("authorization") == f"Bearer {TOKEN}", path
    infers = [path for method, path, _ in sent if method == "POST" and path.endswith("/infer")]
    assert infers == [f"/v2/models/{served_spec.name}/versions/1/infer"] * 2
