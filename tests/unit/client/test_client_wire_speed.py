"""What the SDK does per request so that classify_many keeps up with a plain tritonclient loop.

Found by profiling ``medserve_bench.sdk_speed`` (see its docstring): the async
``classify_many`` held only ``max_concurrency`` requests in flight whatever its
``concurrency`` said, and hopped to a worker thread to check arrays that need
no preparation. These tests pin the behaviour that removed those costs.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from medserve_client import AsyncClient
from medserve_client._core import stack_batch
from medserve_client._inputs import ready_tensors
from medserve_client._pipeline import ordered_map
from medserve_client.testing import AsyncMockTransport, MockTransport

SIZE = (16, 16)


def gray(value: int) -> np.ndarray:
    return np.full((*SIZE, 3), value, dtype=np.uint8)


def test_async_classify_many_keeps_its_concurrency_in_flight_above_max_concurrency(
    fake: MockTransport,
) -> None:
    # Four requests wait for each other: this deadlocks (the barrier breaks)
    # unless classify_many has four in flight although max_concurrency is 2.
    together = threading.Barrier(4, timeout=30)
    arrivals = iter(range(1_000))
    lock = threading.Lock()

    def wait_for_siblings(call: Any) -> None:
        with lock:
            arrival = next(arrivals)
        if arrival < 4:
            together.wait()

    async def run() -> list[int]:
        transport = AsyncMockTransport(fake)
        async with AsyncClient("x:1", transport=transport, retries=0, max_concurrency=2) as client:
            await client.model_info()
            fake.on_infer = wait_for_siblings
            stream = client.classify_many((gray(v * 10) for v in range(12)), concurrency=4)
            return [round(float(p.probabilities[1]) * 255) async for p in stream]

    assert asyncio.run(run()) == [v * 10 for v in range(12)]
    assert fake.max_in_flight == 4


def test_async_split_call_still_sends_at_most_max_concurrency_requests_at_once(
    fake: MockTransport,
) -> None:
    async def run() -> list[int]:
        transport = AsyncMockTransport(fake)
        async with AsyncClient("x:1", transport=transport, retries=0, max_concurrency=2) as client:
            await client.model_info()
            fake.delay_s = 0.05  # Long enough for the chunks to overlap if allowed.
            predictions = await client.classify([gray(v) for v in range(0, 240, 10)])
            return [round(float(p.probabilities[1]) * 255) for p in predictions]

    assert asyncio.run(run()) == list(range(0, 240, 10))
    chunks = [call for call in fake.calls if call.array is not None and call.array.shape[0] > 1]
    assert len(chunks) == 24 // fake.max_batch_size
    assert fake.max_in_flight <= 2


def test_async_client_prepares_files_and_other_sizes_as_before(fake: MockTransport) -> None:
    from PIL import Image

    big = Image.fromarray(np.full((40, 40, 3), 200, dtype=np.uint8))

    async def run() -> list[int]:
        async with AsyncClient("x:1", transport=AsyncMockTransport(fake), retries=0) as client:
            inputs = [big, gray(100), np.full((*SIZE, 3), 0.5, dtype=np.float32)]
            stream = client.classify_many(inputs, concurrency=2)
            return [round(float(p.probabilities[1]) * 255) async for p in stream]

    assert asyncio.run(run()) == [200, 100, 128]


@pytest.mark.parametrize(
    ("item", "encoded", "ready"),
    [
        (gray(7), False, True),
        (gray(7), True, False),  # The encoded entry point takes file bytes.
        (np.zeros((8, 8, 3), np.uint8), False, False),  # Needs a resize.
        (np.zeros((*SIZE, 3), np.float32), False, False),  # Needs a conversion.
        (np.zeros((*SIZE, 4), np.uint8), False, False),  # Needs RGBA to RGB.
        (np.zeros(SIZE, np.uint8), False, False),  # Needs grey to RGB.
        (b"\x89PNG...", False, False),
        ("scan.png", False, False),
    ],
)
def test_ready_tensors_is_true_only_for_uint8_rgb_at_the_model_size(
    item: Any, encoded: bool, ready: bool
) -> None:
    assert ready_tensors([item], encoded=encoded, target_hw=SIZE) is ready
    assert ready_tensors([gray(1), item], encoded=encoded, target_hw=SIZE) is ready


def test_one_image_becomes_a_batch_of_one_without_a_copy() -> None:
    image = gray(9)
    batch = stack_batch([image], batched=True)
    assert batch.shape == (1, *SIZE, 3)
    assert batch.flags.c_contiguous
    assert np.shares_memory(batch, image)
    several = stack_batch([image, gray(3)], batched=True)
    assert several.shape == (2, *SIZE, 3)
    assert not np.shares_memory(several, image)
    assert np.array_equal(stack_batch([image], batched=False), image)


def counted(n: int, consumed: list[int]) -> Iterator[int]:
    """``0 .. n-1``, noting in ``consumed`` each value as it is read."""
    for value in range(n):
        consumed.append(value)
        yield value


def test_ordered_map_threads_take_the_next_input_without_waiting_for_the_consumer() -> None:
    # Input 0 is held until input 3 has been processed: with two threads, the
    # second must take inputs 1, 2 and 3 itself while the consumer still waits
    # for input 0 (a pool fed by the consumer's thread would stall at input 1).
    third_done = threading.Event()

    def call(item: int, index: int) -> int:
        if index == 0:
            assert third_done.wait(timeout=30), "input 3 never started while input 0 ran"
        if index == 3:
            third_done.set()
        return item * 10

    assert list(ordered_map(call, range(6), concurrency=2)) == [0, 10, 20, 30, 40, 50]


def test_ordered_map_reads_at_most_twice_its_concurrency_ahead_of_the_consumer() -> None:
    consumed: list[int] = []

    results = []
    for result in ordered_map(lambda item, index: item, counted(30, consumed), concurrency=3):
        results.append(result)
        assert len(consumed) <= len(results) + 2 * 3
    assert results == list(range(30))


def test_ordered_map_raises_each_error_at_its_input_and_stops_reading() -> None:
    consumed: list[int] = []

    def call(item: int, index: int) -> int:
        if item == 5:
            raise ValueError("input 5 is bad")
        return item

    stream = ordered_map(call, counted(100, consumed), concurrency=2)
    assert [next(stream) for _ in range(5)] == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="input 5"):
        next(stream)
    with pytest.raises(StopIteration):  # The error ends the stream and its threads.
        next(stream)
    assert len(consumed) <= 5 + 1 + 2 * 2


def test_ordered_map_raises_the_sources_own_error_after_the_inputs_before_it() -> None:
    def source() -> Any:
        yield 1
        yield 2
        raise OSError("the disk went away")

    stream = ordered_map(lambda item, index: item, source(), concurrency=4)
    assert [next(stream), next(stream)] == [1, 2]
    with pytest.raises(OSError, match="disk"):
        next(stream)


def test_closing_ordered_map_early_stops_reading_and_waits_for_running_calls() -> None:
    finished: list[int] = []

    def call(item: int, index: int) -> int:
        finished.append(item)
        return item

    consumed: list[int] = []

    stream = ordered_map(call, counted(1000, consumed), concurrency=2)
    assert next(stream) == 0
    stream.close()
    read = len(consumed)
    assert read <= 1 + 2 * 2
    assert sorted(finished) == list(range(len(finished)))
    assert len(consumed) == read  # No thread reads on after close.
