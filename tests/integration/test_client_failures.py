"""Every error class of medserve_client, provoked for real against tritonserver.

The session server (``local_triton``) answers the unknown-model and
wrong-input cases. A private ``LocalTriton`` on a copy of ``served_repo``
whose ``configs/local.pbtxt`` holds requests in the batcher's queue for 2 s
(``max_queue_delay_microseconds``) and admits at most 2 of them
(``max_queue_size``) provokes the deadline and the queue-full cases, and is
then stopped to provoke unavailability.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from medserve_client import (
    Client,
    InferenceTimeoutError,
    InvalidInputError,
    ModelNotReadyError,
    ServerOverloadedError,
    ServerUnavailableError,
)
from medserve_client._sync_transports import open_transport
from medserve_client._transport import InferCall, OutputSpec

pytestmark = pytest.mark.integration

QUEUE_DELAY_US = 2_000_000
MAX_QUEUE_SIZE = 2


def _image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (32, 32, 3), dtype=np.uint8)


def _slow_queue_repo(served_repo: Path, target: Path) -> Path:
    """Copy the classifier and make its local config hold and cap its queue."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    # Only the classifier: every Python-backend model costs a TensorFlow import at start-up.
    shutil.copytree(served_repo / "medcnn", target / "medcnn")
    path = target / "medcnn" / "configs" / "local.pbtxt"
    config = text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
    batching = config.dynamic_batching
    del batching.preferred_batch_size[:]
    batching.preferred_batch_size.append(config.max_batch_size)
    batching.max_queue_delay_microseconds = QUEUE_DELAY_US
    batching.default_queue_policy.max_queue_size = MAX_QUEUE_SIZE
    path.write_text(text_format.MessageToString(config))
    return target


@pytest.fixture(scope="module")
def slow_server(served_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A private server whose batcher waits 2 s and queues at most 2 requests."""
    from medserve.local_triton import LocalTriton

    repo = _slow_queue_repo(served_repo, tmp_path_factory.mktemp("slow") / "repo")
    # Generous start-up: each backend stub imports TensorFlow on a shared 2-core machine.
    server = LocalTriton(
        repo, exit_timeout_s=1, startup_timeout_s=240.0, log_path=repo.parent / "triton.log"
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_unknown_model_raises_model_not_ready(local_triton: Any, protocol: str) -> None:
    url = local_triton.grpc_url if protocol == "grpc" else local_triton.http_url
    with Client(url, model="no_such_model", retries=0) as client:
        assert not client.ready()
        with pytest.raises(ModelNotReadyError, match="no_such_model") as info:
            client.classify(_image())
    assert url.split("://")[-1] in str(info.value)


def test_a_version_that_is_not_loaded_raises_model_not_ready(local_triton: Any) -> None:
    with (
        Client(local_triton.grpc_url, version=99, retries=0) as client,
        pytest.raises(ModelNotReadyError, match="99"),
    ):
        client.classify(_image())


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_the_servers_rejection_of_a_wrong_input_raises_invalid_input(
    local_triton: Any, protocol: str
) -> None:
    url = local_triton.grpc_url if protocol == "grpc" else local_triton.http_url
    with Client(url) as client:
        endpoint = client.endpoint
    transport = open_transport(endpoint)
    try:
        with pytest.raises(InvalidInputError, match="unexpected shape") as info:
            transport.infer(
                InferCall(
                    model="medcnn",
                    version="",
                    input_name="image",
                    array=np.zeros((1, 16, 16, 3), np.uint8),  # The model takes 32x32.
                    outputs=(OutputSpec("probabilities"),),
                    timeout_s=10.0,
                )
            )
    finally:
        transport.close()
    assert info.value.__cause__ is not None  # Mapped at the boundary, chained.


def test_an_unreadable_input_raises_invalid_input_before_sending(
    local_triton: Any, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    with Client(local_triton.grpc_url) as client, pytest.raises(InvalidInputError, match="broken"):
        client.classify([_image(), broken])


@pytest.mark.parametrize("url_kind", ["grpc", "async-grpc", "async-http"])
def test_a_deadline_shorter_than_the_queue_delay_raises_inference_timeout(
    slow_server: Any, url_kind: str
) -> None:
    if url_kind == "grpc":
        with Client(slow_server.grpc_url, retries=0) as client:
            client.model_info()  # Waits out the queue delay once (the label request).
            with pytest.raises(InferenceTimeoutError, match=r"0\.5 s"):
                client.classify(_image(), timeout_s=0.5)
        return
    import asyncio

    from medserve_client import AsyncClient

    # Over gRPC the deadline travels with the request and gRPC enforces it;
    # over HTTP asyncio.wait_for does.
    url = slow_server.grpc_url if url_kind == "async-grpc" else slow_server.http_url

    async def run() -> None:
        async with AsyncClient(url, retries=0) as client:
            await client.model_info()
            await client.classify(_image(), timeout_s=0.5)

    with pytest.raises(InferenceTimeoutError, match=r"0\.5 s"):
        asyncio.run(run())


def test_a_full_queue_raises_server_overloaded(slow_server: Any) -> None:
    with Client(slow_server.grpc_url, retries=0) as client:
        client.model_info()
        with ThreadPoolExecutor(6) as pool:
            futures = [pool.submit(client.classify, _image(i)) for i in range(6)]
            outcomes = [future.exception() for future in futures]
    rejected = [error for error in outcomes if isinstance(error, ServerOverloadedError)]
    assert rejected, outcomes
    assert all(error is None or isinstance(error, ServerOverloadedError) for error in outcomes)
    assert "queue" in str(rejected[0])


def test_a_stopped_server_raises_server_unavailable(slow_server: Any) -> None:
    grpc_url, http_url = slow_server.grpc_url, slow_server.http_url
    slow_server.stop()
    for url in (grpc_url, http_url):
        with Client(url, retries=1, timeout_s=5) as client:
            assert not client.ready()
            with pytest.raises(ServerUnavailableError, match="is tritonserver running"):
                client.classify(_image())
            with pytest.raises(ServerUnavailableError):
                client.wait_until_ready(timeout_s=0.5)
