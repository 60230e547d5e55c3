"""Constructor options: URLs and protocols, TLS, headers and tokens; the CLI; AsyncClient."""

from __future__ import annotations

import asyncio
import io
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from client_fakes import gray, patch_cli_client, png_bytes

from medserve_client import TLS, AsyncClient, Client, InvalidInputError
from medserve_client._core import parse_url
from medserve_client._transport import grpc_headers
from medserve_client.testing import AsyncMockTransport, MockTransport
from medserve_client.transport import InferCall


@pytest.mark.parametrize(
    ("url", "protocol", "expected"),
    [
        ("127.0.0.1:8001", None, ("127.0.0.1:8001", "grpc", False)),
        ("localhost", "http", ("localhost:8000", "http", False)),
        ("grpc://triton", None, ("triton:8001", "grpc", False)),
        ("grpcs://triton:443", None, ("triton:443", "grpc", True)),
        ("http://triton:8000/", None, ("triton:8000", "http", False)),
        (
            "https://triton.example.org/v2base",
            None,
            ("triton.example.org:8000/v2base", "http", True),
        ),
    ],
)
def test_urls_choose_protocol_port_and_tls(
    url: str, protocol: str | None, expected: tuple[str, str, bool]
) -> None:
    assert parse_url(url, protocol) == expected


def test_contradicting_or_unknown_schemes_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="implies protocol 'http'"):
        parse_url("http://x:1", "grpc")
    with pytest.raises(InvalidInputError, match="ftp"):
        parse_url("ftp://x:1", None)
    with pytest.raises(InvalidInputError, match="'grpc' or 'http'"):
        parse_url("x:1", "websocket")


def test_tls_options_turn_tls_on_and_need_key_and_chain_together() -> None:
    client = Client("triton:8001", tls=TLS(root_certificates="ca.pem"))
    assert client.endpoint.ssl and client.endpoint.display_url == "grpcs://triton:8001"
    with pytest.raises(InvalidInputError, match="mutual TLS"):
        TLS(private_key="k.pem")


def test_headers_and_bearer_token_reach_every_request_but_not_the_url() -> None:
    client = Client("x:1", headers={"X-Tenant": "radiology"}, bearer_token="s3cret")
    assert client.endpoint.headers == {"X-Tenant": "radiology", "authorization": "Bearer s3cret"}
    assert "s3cret" not in client.endpoint.display_url
    assert grpc_headers(client.endpoint.headers) == {
        "x-tenant": "radiology",
        "authorization": "Bearer s3cret",
    }
    with pytest.raises(InvalidInputError, match="one-line"):
        Client("x:1", headers={"X-Bad": "a\nb"})


def test_cli_classify_prints_one_json_object_per_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fake: MockTransport
) -> None:
    from medserve_client import cli

    paths = []
    for value in (10, 240):
        path = tmp_path / f"{value}.png"
        path.write_bytes(png_bytes(gray(value, size=20)))
        paths.append(str(path))
    patch_cli_client(monkeypatch, fake)
    out = io.StringIO()
    status = cli.main(["classify", *paths, "--top-k", "2", "--json"], stdout=out)
    assert status == 0
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [row["path"] for row in rows] == paths
    assert [row["label"] for row in rows] == ["normal", "lesion"]
    assert len(rows[0]["top_k"]) == 2


def test_cli_health_and_info(monkeypatch: pytest.MonkeyPatch, fake: MockTransport) -> None:
    from medserve_client import cli

    patch_cli_client(monkeypatch, fake)
    out = io.StringIO()
    assert cli.main(["health", "--json"], stdout=out) == 0
    assert json.loads(out.getvalue())["ready"] is True
    out = io.StringIO()
    assert cli.main(["info"], stdout=out) == 0
    assert "labels       normal, lesion" in out.getvalue()
    # The server answers, the model does not exist: "model not ready" (4).
    assert cli.main(["--model", "nope", "health"], stdout=io.StringIO()) == 4


def test_cli_errors_are_one_line_with_the_exit_status_of_their_class(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], fake: MockTransport
) -> None:
    from medserve_client import cli

    patch_cli_client(monkeypatch, fake)
    status = cli.main(["classify", "/no/such/file.png"], stdout=io.StringIO())
    err = capsys.readouterr().err
    assert status == InvalidInputError.exit_code
    assert err.startswith("medserve-client: error: /no/such/file.png: no such file")
    assert err.count("\n") == 1
    status = cli.main(["classify", "x.dcm", "--window", "abc"], stdout=io.StringIO())
    assert status == 2 and "CENTER,WIDTH" in capsys.readouterr().err


def test_async_client_has_the_same_surface_and_results(fake: MockTransport) -> None:
    first_two = threading.Barrier(2, timeout=60)
    waited: list[InferCall] = []
    lock = threading.Lock()

    def wait_for_a_sibling(call: InferCall) -> None:
        # Deadlocks unless two of classify_many's requests are in flight together.
        # The count is taken under a lock: checked and appended apart, a third
        # request could slip in and wait on the barrier alone.
        with lock:
            first = call.array is not None and call.array.shape[0] == 1 and len(waited) < 2
            if first:
                waited.append(call)
        if first:
            first_two.wait()

    async def run() -> tuple[Any, ...]:
        async with AsyncClient("x:1", transport=AsyncMockTransport(fake), retries=0) as client:
            assert await client.ready()
            info = await client.model_info()
            batch = await client.classify([gray(v) for v in range(0, 250, 25)], top_k=2)
            fake.on_infer = wait_for_a_sibling
            many = [
                p async for p in client.classify_many((gray(v) for v in range(20)), concurrency=5)
            ]
            return info, batch, many

    info, batch, many = asyncio.run(run())
    assert info.labels == ("normal", "lesion")
    assert [float(p.probabilities[1]) for p in batch] == pytest.approx(
        [v / 255 for v in range(0, 250, 25)], abs=1e-6
    )
    assert [round(float(p.probabilities[1]) * 255) for p in many] == list(range(20))
    assert 1 < fake.max_in_flight <= 5 + 3
    assert fake.closed


def test_async_client_shared_memory_is_unlinked_on_close(fake: MockTransport) -> None:
    from multiprocessing import shared_memory

    async def run() -> list[Any]:
        async with AsyncClient(
            "x:1", transport=AsyncMockTransport(fake), shared_memory=True
        ) as client:
            return await client.classify([gray(10), gray(250)])

    predictions = asyncio.run(run())
    assert [p.label for p in predictions] == ["normal", "lesion"]
    assert fake.registered and sorted(fake.unregistered) == sorted(fake.registered)
    for name in fake.registered:
        with pytest.raises(FileNotFoundError):
            shared_memory.SharedMemory(name=name)


def test_float_batches_are_accepted_as_4d_arrays(make_client: Callable[..., Client]) -> None:
    batch = np.stack([gray(0), gray(255)]).astype(np.float32) / 255.0
    assert [p.label for p in make_client().classify(batch)] == ["normal", "lesion"]


def test_http_transport_gives_each_thread_its_own_client_and_drops_those_of_dead_threads() -> None:
    import gc
    import threading

    from medserve_client._sync_transports import HttpTransport
    from medserve_client._transport import Endpoint

    transport = HttpTransport(Endpoint(url="127.0.0.1:1", protocol="http"))
    mine = transport._client()
    assert transport._client() is mine  # Same thread, same client (no socket opened yet).
    # The objects themselves, not their id()s: an id can be reused once its
    # object is freed, and a finished thread's client is freed on purpose.
    seen: list[object] = []

    def use() -> None:
        seen.append(transport._client())

    threads = [threading.Thread(target=use) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    clients = [mine, *seen]
    assert len(seen) == 3
    assert all(a is not b for i, a in enumerate(clients) for b in clients[i + 1 :])
    assert len(transport._clients) == 4  # Still referenced here: still tracked.
    del clients
    seen.clear()
    gc.collect()
    assert list(transport._clients) == [mine]  # Clients of finished threads are gone.
    transport.close()


@pytest.mark.parametrize(
    ("url", "header"),
    [
        ("127.0.0.1:8001", "triton-grpc-protocol-medserve-admin-key"),
        ("http://127.0.0.1:8000", "medserve-admin-key"),
    ],
)
def test_the_admin_key_goes_only_with_admin_calls(url: str, header: str) -> None:
    import importlib

    from medserve_client._requests import InferCall, Request, WireHeaders

    client = Client(url, admin_key="s3cret-admin-key-0123", headers={"x-team": "radiology"})
    headers = WireHeaders.of(client.endpoint)
    protocol = client.endpoint.protocol
    call = InferCall(model="medcnn", version="", input_name="image", shape=(1, 2, 2, 3))
    plain = [
        Request.model_metadata("medcnn", "", timeout_s=1.0),
        Request.infer(importlib.import_module(f"tritonclient.{protocol}"), call),
    ]
    admin = [
        Request.register_shm("r", "/k", 16, timeout_s=1.0),
        Request.unregister_shm("r", timeout_s=1.0),
    ]
    for request in plain:
        assert request.kwargs_for(protocol, headers)["headers"] == {"x-team": "radiology"}
    for request in admin:
        sent = request.kwargs_for(protocol, headers)["headers"]
        assert sent == {"x-team": "radiology", header: "s3cret-admin-key-0123"}
    assert "s3cret" not in repr(client.endpoint)
