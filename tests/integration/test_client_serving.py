"""medserve_client against the real local tritonserver: same numbers by every path.

Uses the session fixtures of ``tests/integration/conftest.py``: ``served_repo``
(a tiny exported model: 32x32 input, labels ("normal", "lesion")) and
``local_triton`` (a started ``LocalTriton`` on it) and ``savedmodel_reference``
(the same SavedModel called in-process).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from medserve_client import Client, contract
from medserve_client._inputs import prepare_tensor

pytestmark = pytest.mark.integration

SIZE = (32, 32)
# Client-side resize against the server's tf.image.resize(bilinear, antialias)
# + round, measured on this pair of libraries (Pillow 10+ "F"-mode bilinear,
# TensorFlow 2.17-2.21): at most 1 grey level on at most 1% of pixels, for
# PNGs and for JPEGs (both decoded at full scale with the accurate integer
# IDCT). The bound documented in medserve_client.preprocessing.
PNG_MAX_LEVELS = 1
PNG_MAX_DIFFERING_FRACTION = 0.01
# What those pixel differences do to this model's probabilities.
RESIZED_PROBABILITY_ATOL = 0.01


def _urls(server: Any) -> dict[str, str]:
    return {"grpc": server.grpc_url, "http": server.http_url}


def _rng_images(count: int, seed: int, size: tuple[int, int] = SIZE) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(count)]


def _smooth(height: int, width: int, seed: int) -> np.ndarray:
    """A photo-like image: smooth structure plus sensor noise."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (max(2, height // 8), max(2, width // 8), 3), dtype=np.uint8)
    image = np.asarray(Image.fromarray(base).resize((width, height), Image.Resampling.BICUBIC))
    return np.clip(image + rng.normal(0, 12, image.shape), 0, 255).astype(np.uint8)


def _encode(array: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def _server_resize(server: Any, payloads: list[bytes]) -> np.ndarray:
    """The server's own decode + resize (the first step of the encoded ensemble)."""
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        images = []
        for payload in payloads:
            tensor = grpcclient.InferInput("image_bytes", [1, 1], "BYTES")
            tensor.set_data_from_numpy(np.array([[payload]], dtype=np.object_))
            images.append(client.infer("medcnn_preprocess", [tensor]).as_numpy("image")[0])
        return np.stack(images)
    finally:
        client.close()


def test_model_info_comes_from_the_server(local_triton: Any) -> None:
    with Client(local_triton.grpc_url) as client:
        info = client.model_info()
    assert info.input_name == "image" and info.input_datatype == "UINT8"
    assert info.input_shape == (*SIZE, 3)
    assert info.labels == ("normal", "lesion")
    assert info.max_batch_size > 0 and info.version


def test_grpc_http_and_shared_memory_agree_with_each_other_and_with_in_process(
    local_triton: Any, savedmodel_reference: Any
) -> None:
    ct = get_testdata_file("CT_small.dcm", download=False)
    inputs: list[Any] = [*_rng_images(10, seed=1), ct]
    tensors = np.stack([prepare_tensor(x, index=0, target_hw=SIZE) for x in inputs])
    results = {}
    for name, url, shm in [
        ("grpc", local_triton.grpc_url, False),
        ("http", local_triton.http_url, False),
        ("grpc+shm", local_triton.grpc_url, True),
        ("http+shm", local_triton.http_url, True),
    ]:
        with Client(url, shared_memory=shm) as client:
            predictions = client.classify(inputs, top_k=2)
        results[name] = np.stack([p.probabilities for p in predictions])
    reference = savedmodel_reference.classify(tensors)
    for name, probabilities in results.items():
        np.testing.assert_allclose(probabilities, results["grpc"], atol=1e-5, err_msg=name)
        np.testing.assert_allclose(probabilities, reference, atol=1e-5, err_msg=name)


def test_encoded_path_matches_for_pngs_already_at_the_model_size(local_triton: Any) -> None:
    pngs = [_encode(image, "PNG") for image in _rng_images(6, seed=2)]
    with Client(local_triton.grpc_url) as client:
        local = np.stack([p.probabilities for p in client.classify(pngs)])
    with Client(local_triton.grpc_url, send_encoded=True) as client:
        predictions = client.classify(pngs)
    assert {p.model_name for p in predictions} == {"medcnn_encoded"}
    np.testing.assert_allclose(np.stack([p.probabilities for p in predictions]), local, atol=1e-5)


@pytest.mark.parametrize("size", [(64, 64), (100, 75), (512, 384), (20, 20), (33, 47)])
def test_client_resize_is_within_tolerance_of_the_servers_resize_for_pngs(
    local_triton: Any, size: tuple[int, int]
) -> None:
    images = [_smooth(*size, seed=3), _rng_images(1, seed=4, size=size)[0]]
    pngs = [_encode(image, "PNG") for image in images]
    client_side = np.stack([prepare_tensor(p, index=0, target_hw=SIZE) for p in pngs])
    server_side = _server_resize(local_triton, pngs)
    diff = np.abs(client_side.astype(np.int16) - server_side.astype(np.int16))
    assert diff.max() <= PNG_MAX_LEVELS
    assert (diff > 0).mean() <= PNG_MAX_DIFFERING_FRACTION
    with Client(local_triton.grpc_url) as client:
        local = np.stack([p.probabilities for p in client.classify(pngs)])
    with Client(local_triton.grpc_url, send_encoded=True) as client:
        remote = np.stack([p.probabilities for p in client.classify(pngs)])
    np.testing.assert_allclose(local, remote, atol=RESIZED_PROBABILITY_ATOL)


def test_client_preprocessing_of_a_large_jpeg_is_within_the_same_tolerance(
    local_triton: Any,
) -> None:
    jpeg = _encode(_smooth(1024, 1024, seed=5), "JPEG")
    client_side = prepare_tensor(jpeg, index=0, target_hw=SIZE).astype(np.int16)
    server_side = _server_resize(local_triton, [jpeg])[0].astype(np.int16)
    diff = np.abs(client_side - server_side)
    assert diff.max() <= PNG_MAX_LEVELS
    assert (diff > 0).mean() <= PNG_MAX_DIFFERING_FRACTION


def _counts(server: Any) -> tuple[int, int]:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        counters = contract.settled_snapshot(client, "medcnn")["medcnn"]
    finally:
        client.close()
    return counters.inference_count, counters.execution_count


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_classify_many_with_concurrency_16_makes_the_server_form_batches(
    local_triton: Any, protocol: str
) -> None:
    images = _rng_images(96, seed=6)
    with Client(_urls(local_triton)[protocol]) as client:
        client.model_info()
        inferences_before, executions_before = _counts(local_triton)
        predictions = list(client.classify_many(images, concurrency=16))
        inferences_after, executions_after = _counts(local_triton)
    assert len(predictions) == 96
    inferences = inferences_after - inferences_before
    executions = executions_after - executions_before
    assert inferences == 96
    assert executions < inferences, f"{executions} executions for {inferences} inferences"


def test_classify_many_returns_results_in_input_order(local_triton: Any) -> None:
    images = _rng_images(24, seed=7)
    with Client(local_triton.grpc_url) as client:
        one_by_one = [client.classify(image)[0].probabilities for image in images]
        many = [p.probabilities for p in client.classify_many(iter(images), concurrency=8)]
    np.testing.assert_allclose(np.stack(many), np.stack(one_by_one), atol=1e-5)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_requests_with_headers_and_a_bearer_token_work(local_triton: Any, protocol: str) -> None:
    with Client(
        _urls(local_triton)[protocol],
        headers={"X-Request-Source": "medserve-tests"},
        bearer_token="not-checked-by-the-local-server",
    ) as client:
        assert client.ready()
        (prediction,) = client.classify(_rng_images(1, seed=8)[0])
    assert prediction.label in ("normal", "lesion")


def test_async_client_agrees_with_the_blocking_client(local_triton: Any) -> None:
    import asyncio

    from medserve_client import AsyncClient

    images = _rng_images(12, seed=9)
    with Client(local_triton.grpc_url) as client:
        expected = np.stack([p.probabilities for p in client.classify(images)])

    async def run(url: str, shm: bool) -> np.ndarray:
        async with AsyncClient(url, shared_memory=shm) as client:
            await client.wait_until_ready(timeout_s=10)
            got = [p.probabilities async for p in client.classify_many(images, concurrency=6)]
        return np.stack(got)

    for url, shm in [(local_triton.grpc_url, False), (local_triton.http_url, True)]:
        np.testing.assert_allclose(asyncio.run(run(url, shm)), expected, atol=1e-5)


def test_the_cli_classifies_files_against_the_server(local_triton: Any, tmp_path: Path) -> None:
    import io as stdio
    import json

    from medserve_client import cli

    path = tmp_path / "scan.png"
    path.write_bytes(_encode(_rng_images(1, seed=10)[0], "PNG"))
    ct = get_testdata_file("CT_small.dcm", download=False)
    out = stdio.StringIO()
    status = cli.main(
        ["--url", local_triton.http_url, "classify", str(path), str(ct), "--json", "--top-k", "2"],
        stdout=out,
    )
    assert status == 0
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [row["path"] for row in rows] == [str(path), str(ct)]
    assert all(len(row["top_k"]) == 2 for row in rows)
