"""Bad requests on the real tritonserver fail alone, clearly, and leave no trace of their data.

Usage::

    .venv/bin/pytest tests/integration/test_bad_input.py

Each case checks the error a client sees, then that the server still answers
the next request (or the concurrent ones) correctly.
"""

from __future__ import annotations

import io
import queue
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from image_bombs import png_bomb
from PIL import Image
from tritonclient.utils import InferenceServerException

from chaos.memory import watch_memory
from medserve.local_triton import LocalTriton
from medserve.spec import ModelSpec
from medserve_client import contract

pytestmark = pytest.mark.integration

ATOL = 1e-5
# The bound: bombs must not grow the server's memory by this much.
BOMB_GROWTH_LIMIT_BYTES = 256 * 2**20
# Stands in for an identifier a corrupt upload could carry: it must never reach
# an error message or the server log.
SECRET_MARKER = b"PATIENT-ID-0042-DOE^JANE"


def _images(count: int, seed: int, spec: ModelSpec) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, *spec.input_shape), dtype=np.uint8)


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def _corrupt_png(image: np.ndarray) -> bytes:
    """A PNG signature and header followed by garbage: looks like an image, decodes to nothing.

    The IHDR chunk (bytes 8-33) stays intact so the decoder's pixel cap reads a
    plausible size and the failure is the decoder's own.
    """
    return _png(image)[:33] + SECRET_MARKER + b"\x00" * 64


def _uint8_input(images: np.ndarray, spec: ModelSpec) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput(spec.input_name, list(images.shape), "UINT8")
    tensor.set_data_from_numpy(images)
    return tensor


def _bytes_input(name: str, files: list[bytes]) -> grpcclient.InferInput:
    batch = np.array(files, dtype=object).reshape(-1, 1)
    tensor = grpcclient.InferInput(name, list(batch.shape), "BYTES")
    tensor.set_data_from_numpy(batch)
    return tensor


def _assert_classifier_still_serves(client: Any, spec: ModelSpec, reference: Any) -> None:
    images = _images(2, seed=99, spec=spec)
    served = client.infer(spec.name, [_uint8_input(images, spec)]).as_numpy(spec.output_name)
    np.testing.assert_allclose(served, reference.classify(images), rtol=0, atol=ATOL)


def _assert_classified(result: Any, images: np.ndarray, spec: ModelSpec, reference: Any) -> None:
    """The server's answer equals the SavedModel called in-process on ``images``."""
    np.testing.assert_allclose(
        result.as_numpy(spec.output_name), reference.classify(images), rtol=0, atol=ATOL
    )


def _send_all(client: Any, model: str, requests: list[list[grpcclient.InferInput]]) -> list[Any]:
    """Send every request at once (async); return (result, error) per request, in order."""
    done: queue.Queue[tuple[int, Any, Any]] = queue.Queue()
    for index, inputs in enumerate(requests):
        client.async_infer(
            model,
            inputs,
            callback=lambda result, error, index=index: done.put((index, result, error)),
        )
    answers = sorted((done.get(timeout=60) for _ in requests), key=lambda item: item[0])
    return [(result, error) for _, result, error in answers]


def test_wrong_shape_fails_with_expected_shape_and_next_request_succeeds(
    client: Any, served_spec: ModelSpec, savedmodel_reference: Any
) -> None:
    height, width, _ = served_spec.input_shape
    wrong = np.zeros((1, height * 2, width, 3), dtype=np.uint8)

    with pytest.raises(InferenceServerException) as caught:
        client.infer(served_spec.name, [_uint8_input(wrong, served_spec)])

    message = caught.value.message()
    assert "unexpected shape" in message
    assert f"[-1,{height},{width},3]" in message
    _assert_classifier_still_serves(client, served_spec, savedmodel_reference)


def test_wrong_dtype_fails_naming_the_expected_dtype_and_next_request_succeeds(
    client: Any, served_spec: ModelSpec, savedmodel_reference: Any
) -> None:
    images = _images(1, seed=5, spec=served_spec).astype(np.float32) / 255.0
    tensor = grpcclient.InferInput(served_spec.input_name, list(images.shape), "FP32")
    tensor.set_data_from_numpy(images)

    with pytest.raises(InferenceServerException) as caught:
        client.infer(served_spec.name, [tensor])

    assert "FP32" in caught.value.message() and "UINT8" in caught.value.message()
    _assert_classifier_still_serves(client, served_spec, savedmodel_reference)


def test_corrupt_encoded_image_fails_clearly_and_next_request_succeeds(
    client: Any, served_spec: ModelSpec, savedmodel_reference: Any
) -> None:
    image = _images(1, seed=6, spec=served_spec)
    bad = _bytes_input(served_spec.encoded_input_name, [_corrupt_png(image[0])])

    with pytest.raises(InferenceServerException) as caught:
        client.infer(served_spec.encoded_name, [bad])

    message = caught.value.message()
    assert "could not process this request" in message
    assert "PNG or JPEG" in message
    assert "Traceback" not in message and SECRET_MARKER.decode() not in message
    good = _bytes_input(served_spec.encoded_input_name, [_png(image[0])])
    served = client.infer(served_spec.encoded_name, [good]).as_numpy(served_spec.output_name)
    np.testing.assert_allclose(served, savedmodel_reference.classify(image), rtol=0, atol=ATOL)


def test_corrupt_image_does_not_fail_concurrent_good_requests(
    client: Any, served_spec: ModelSpec, savedmodel_reference: Any
) -> None:
    images = _images(6, seed=7, spec=served_spec)
    files = [_png(image) for image in images]
    files[2] = _corrupt_png(images[2])
    requests = [[_bytes_input(served_spec.encoded_input_name, [data])] for data in files]

    answers = _send_all(client, served_spec.encoded_name, requests)

    for index, (result, error) in enumerate(answers):
        if index == 2:
            assert result is None and "PNG or JPEG" in error.message()
            continue
        assert error is None, error
        _assert_classified(result, images[index : index + 1], served_spec, savedmodel_reference)


def test_corrupt_image_in_a_batched_execution_fails_only_its_request(
    client: Any, served_spec: ModelSpec, batched_decoder: Any
) -> None:
    images = _images(batched_decoder.max_batch_size, seed=8, spec=served_spec)
    files = [_png(image) for image in images]
    files[5] = _corrupt_png(images[5])
    stats = contract.StatsWindow.open(client, batched_decoder.name)

    answers = _send_all(
        client, batched_decoder.name, [[_bytes_input("image_bytes", [data])] for data in files]
    )

    executions = stats.close(requests=len(files)).executions
    assert executions == 1, "the test needs all requests in one execution"
    for index, (result, error) in enumerate(answers):
        if index == 5:
            assert result is None and "PNG or JPEG" in error.message()
            continue
        assert error is None, error
        np.testing.assert_array_equal(result.as_numpy(served_spec.input_name)[0], images[index])


@pytest.fixture(scope="module")
def bomb() -> bytes:
    """A valid 10000x10000 RGB PNG: ~290 KB on the wire, 300 MB once decoded."""
    data = png_bomb(10_000, 10_000)
    assert len(data) < 512 * 1024
    return data


def test_png_bombs_are_refused_naming_the_limit_and_concurrent_requests_are_served(
    record_property: Callable[[str, object], None],
    client: Any,
    local_triton: LocalTriton,
    served_spec: ModelSpec,
    savedmodel_reference: Any,
    bomb: bytes,
) -> None:
    images = _images(8, seed=12, spec=served_spec)
    files = [bomb if index % 2 else _png(image) for index, image in enumerate(images)]
    requests = [[_bytes_input(served_spec.encoded_input_name, [data])] for data in files]
    assert local_triton.pid is not None

    with watch_memory(local_triton.pid) as memory:
        answers = _send_all(client, served_spec.encoded_name, requests)

    for index, (result, error) in enumerate(answers):
        if index % 2:
            assert result is None
            message = error.message()
            assert "10000x10000 pixels" in message
            assert f"exceeds max_pixels = {served_spec.max_pixels}" in message
            assert error.status() == "StatusCode.INVALID_ARGUMENT"
            assert "Traceback" not in message
            continue
        assert error is None, error
        _assert_classified(result, images[index : index + 1], served_spec, savedmodel_reference)
    grown = memory.peak_growth_bytes
    # Reported with --junitxml (the figure the issue asks for).
    record_property("bomb_peak_growth_mib", round(grown / 2**20, 1))
    record_property("bomb_file_kib", round(len(bomb) / 1024, 1))
    assert grown < BOMB_GROWTH_LIMIT_BYTES, (
        f"4 bombs grew the server's peak memory by {grown / 2**20:.0f} MB"
    )
    _assert_classifier_still_serves(client, served_spec, savedmodel_reference)


def test_a_bomb_in_a_batched_execution_fails_only_its_request(
    client: Any,
    local_triton: LocalTriton,
    served_spec: ModelSpec,
    batched_decoder: Any,
    bomb: bytes,
) -> None:
    images = _images(batched_decoder.max_batch_size, seed=13, spec=served_spec)
    files = [_png(image) for image in images]
    files[3] = bomb
    stats = contract.StatsWindow.open(client, batched_decoder.name)
    assert local_triton.pid is not None

    with watch_memory(local_triton.pid) as memory:
        answers = _send_all(
            client, batched_decoder.name, [[_bytes_input("image_bytes", [data])] for data in files]
        )

    assert stats.close(requests=len(files)).executions == 1, "the test needs one execution"
    for index, (result, error) in enumerate(answers):
        if index == 3:
            assert result is None and "exceeds max_pixels" in error.message()
            continue
        assert error is None, error
        np.testing.assert_array_equal(result.as_numpy(served_spec.input_name)[0], images[index])
    assert memory.peak_growth_bytes < BOMB_GROWTH_LIMIT_BYTES


def test_server_log_carries_no_payload_of_rejected_requests(
    client: Any, local_triton: LocalTriton, served_spec: ModelSpec
) -> None:
    image = _images(1, seed=9, spec=served_spec)
    with pytest.raises(InferenceServerException):
        client.infer(
            served_spec.encoded_name,
            [_bytes_input(served_spec.encoded_input_name, [_corrupt_png(image[0])])],
        )

    log_text = local_triton.log_path.read_bytes()
    assert b"could not process this request" in log_text  # The failure is logged...
    assert SECRET_MARKER not in log_text  # ...without the request's bytes.
