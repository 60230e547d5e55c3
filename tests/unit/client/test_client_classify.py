"""Client behaviour on a fake transport: model facts, batches, order, encoded path, shm."""

from __future__ import annotations

import threading
from collections.abc import Callable
from multiprocessing import shared_memory
from typing import Any

import numpy as np
import pytest
from client_fakes import gray, png_bytes

from medserve_client import Client, InvalidInputError, ServerUnavailableError
from medserve_client.testing import MockTransport, brightness
from medserve_client.transport import InferCall


def _array(call: InferCall) -> np.ndarray:
    """The tensor a request carried by value."""
    assert call.array is not None
    return call.array


def test_model_info_is_read_from_metadata_config_and_classification_labels(
    make_client: Callable[..., Client], fake: MockTransport
) -> None:
    fake.labels = ("benign", "malignant")
    info = make_client().model_info()
    assert info.input_name == "image" and info.input_datatype == "UINT8"
    assert info.input_shape == (16, 16, 3) and info.max_batch_size == 4
    assert info.labels == ("benign", "malignant") and info.version == "2"
    assert fake.calls[0].outputs[0].class_count == 2  # Labels came from the server.


def test_model_info_is_cached(make_client: Callable[..., Client], fake: MockTransport) -> None:
    client = make_client()
    assert client.model_info() is client.model_info()
    assert len(fake.calls) == 1


def test_classify_returns_one_prediction_per_input_in_order_with_top_k(
    make_client: Callable[..., Client],
) -> None:
    values = [0, 200, 30, 255, 128]
    predictions = make_client().classify([gray(v) for v in values], top_k=2)
    assert [p.label for p in predictions] == ["normal", "lesion", "normal", "lesion", "lesion"]
    for value, prediction in zip(values, predictions, strict=True):
        expected = brightness(gray(value)[None])[0]
        np.testing.assert_allclose(prediction.probabilities, expected)
        assert prediction.score == pytest.approx(float(expected.max()))
        assert len(prediction.top_k) == 2 and prediction.top_k[0][0] == prediction.label
        assert prediction.model_name == "medcnn" and prediction.model_version == "2"
        assert prediction.latency_ms >= 0
        assert not prediction.probabilities.flags.writeable


def test_a_single_input_or_a_4d_batch_is_accepted(make_client: Callable[..., Client]) -> None:
    client = make_client()
    assert len(client.classify(gray(10))) == 1
    assert len(client.classify(np.stack([gray(10), gray(20), gray(30)]))) == 3
    assert client.classify([]) == []


def test_batches_larger_than_max_batch_size_are_split_sent_concurrently_and_kept_in_order(
    make_client: Callable[..., Client], fake: MockTransport
) -> None:
    barrier = threading.Barrier(3, timeout=60)

    def wait_for_siblings(call: Any) -> None:
        if call.outputs[0].class_count == 0:
            barrier.wait()  # Deadlocks unless the 3 chunks are in flight together.

    client = make_client()
    client.model_info()
    fake.on_infer = wait_for_siblings
    values = list(range(0, 250, 25))  # 10 images, max batch 4: chunks of 4, 4, 2.
    predictions = client.classify([gray(v) for v in values])
    sizes = sorted(_array(call).shape[0] for call in fake.calls[1:])
    assert sizes == [2, 4, 4]
    lesion = [float(p.probabilities[1]) for p in predictions]
    assert lesion == pytest.approx([v / 255 for v in values], abs=1e-6)


def test_mixed_input_kinds_in_one_call(make_client: Callable[..., Client], tmp_path: Any) -> None:
    from PIL import Image

    path = tmp_path / "a.png"
    path.write_bytes(png_bytes(gray(60, size=32)))
    inputs = [path, png_bytes(gray(70)), Image.fromarray(gray(80)), gray(90), gray(100) / 255.0]
    predictions = make_client().classify(inputs)
    lesion = [float(p.probabilities[1]) for p in predictions]
    assert lesion == pytest.approx([v / 255 for v in (60, 70, 80, 90, 100)], abs=1e-6)


def test_an_invalid_input_fails_the_call_before_anything_is_sent(
    make_client: Callable[..., Client], fake: MockTransport
) -> None:
    client = make_client()
    client.model_info()
    with pytest.raises(InvalidInputError, match=r"input 1 \(bytes\)"):
        client.classify([gray(1), b"not an image"])
    assert len(fake.calls) == 1  # Only the label probe.


@pytest.mark.parametrize("top_k", [0, -1, 1.5, True])
def test_top_k_must_be_a_positive_integer(make_client: Callable[..., Client], top_k: Any) -> None:
    with pytest.raises(InvalidInputError, match="top_k"):
        make_client().classify(gray(1), top_k=top_k)


def test_top_k_larger_than_the_classes_lists_every_class(
    make_client: Callable[..., Client],
) -> None:
    (prediction,) = make_client().classify(gray(1), top_k=10)
    assert [label for label, _ in prediction.top_k] == ["normal", "lesion"]


def test_classify_many_yields_in_input_order_with_bounded_requests_in_flight(
    make_client: Callable[..., Client], fake: MockTransport
) -> None:
    client = make_client()
    client.model_info()
    first_two = threading.Barrier(2, timeout=60)
    arrivals = iter(range(1_000))
    lock = threading.Lock()

    def wait_for_a_sibling(call: InferCall) -> None:
        # The first two requests wait for each other: this deadlocks (and the
        # barrier breaks) unless classify_many has two in flight at once, so
        # concurrency is shown without relying on timing.
        with lock:
            arrival = next(arrivals)
        if arrival < 2:
            first_two.wait()

    fake.on_infer = wait_for_a_sibling
    consumed: list[int] = []

    def source() -> Any:
        for value in range(40):
            consumed.append(value)
            yield gray(value * 6)

    results = []
    for prediction in client.classify_many(source(), concurrency=4):
        results.append(prediction)
        # Backpressure: the source is never read more than 2 x concurrency
        # ahead of the results (the threads take inputs themselves).
        assert len(consumed) <= len(results) + 2 * 4
    assert [round(float(p.probabilities[1]) * 255) for p in results] == [v * 6 for v in range(40)]
    assert 1 < fake.max_in_flight <= 4
    assert all(_array(call).shape[0] == 1 for call in fake.calls[1:])


def test_send_encoded_sends_file_bytes_to_the_encoded_entry_point(
    make_client: Callable[..., Client], fake: MockTransport
) -> None:
    png = png_bytes(gray(100, size=16))
    client = make_client(send_encoded=True)
    (prediction,) = client.classify(png)
    call = fake.calls[-1]
    assert call.model == "medcnn_encoded" and call.input_name == "image_bytes"
    assert call.datatype == "BYTES" and _array(call).shape == (1, 1) and _array(call)[0, 0] == png
    assert prediction.model_name == "medcnn_encoded" and prediction.label == "normal"


def test_shared_memory_regions_are_registered_once_reused_and_unlinked_on_close(
    fake: MockTransport,
) -> None:
    client = Client("127.0.0.1:1", transport=fake, shared_memory=True, retries=0)
    first = client.classify([gray(10), gray(250)])
    second = client.classify([gray(20)] * 6)  # Two chunks: 4 + 2.
    assert [p.label for p in first] == ["normal", "lesion"]
    assert len(second) == 6
    names = list(fake.registered)
    assert 1 <= len(names) <= 2  # At most one region per request in flight.
    assert all(call.shm_region in names for call in fake.calls[1:])
    client.close()
    assert sorted(fake.unregistered) == sorted(names)
    for name in names:
        with pytest.raises(FileNotFoundError):
            shared_memory.SharedMemory(name=name)


def test_shared_memory_is_unlinked_on_close_even_after_a_failed_request(
    fake: MockTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = Client("127.0.0.1:1", transport=fake, shared_memory=True, retries=0)
    client.model_info()
    fake.failures.append(ConnectionRefusedError("refused"))
    with pytest.raises(ServerUnavailableError):
        client.classify(gray(10))
    names = list(fake.registered)
    assert names
    monkeypatch.setattr(fake, "unregister_shm", _raise_unavailable)
    client.close()  # Server gone: unregistering fails, unlinking still happens.
    for name in names:
        with pytest.raises(FileNotFoundError):
            shared_memory.SharedMemory(name=name)
    assert fake.closed


def _raise_unavailable(name: str, *, timeout_s: float) -> None:
    raise ServerUnavailableError("gone")


def test_a_closed_client_refuses_calls_with_advice(make_client: Callable[..., Client]) -> None:
    client = make_client()
    client.close()
    with pytest.raises(InvalidInputError, match="closed"):
        client.classify(gray(1))


def test_shared_memory_and_send_encoded_cannot_be_combined() -> None:
    with pytest.raises(InvalidInputError, match="cannot be combined"):
        Client(send_encoded=True, shared_memory=True)


def test_ready_and_wait_until_ready_use_server_and_model_readiness(
    make_client: Callable[..., Client],
) -> None:
    assert make_client().ready()
    missing = make_client(model="nope")
    assert not missing.ready()
    from medserve_client import ModelNotReadyError

    with pytest.raises(ModelNotReadyError, match="'nope' did not become ready"):
        missing.wait_until_ready(timeout_s=0.3, poll_s=0.05)


def test_closing_classify_many_early_stops_reading_the_input(
    make_client: Callable[..., Client], fake: MockTransport
) -> None:
    client = make_client()
    taken: list[int] = []

    def source() -> Any:
        for value in range(1000):
            taken.append(value)
            yield gray(value % 256)

    stream = client.classify_many(source(), concurrency=3)
    first = [next(stream) for _ in range(2)]
    stream.close()  # type: ignore[attr-defined]
    assert len(first) == 2 and len(taken) <= 2 + 2 * 3  # At most 2 x concurrency read ahead.


def test_classify_many_validates_its_arguments_at_call_time(
    make_client: Callable[..., Client],
) -> None:
    client = make_client()
    with pytest.raises(InvalidInputError, match="concurrency"):
        client.classify_many([gray(1)], concurrency=0)
    with pytest.raises(InvalidInputError, match="top_k"):
        client.classify_many([gray(1)], top_k=0)
