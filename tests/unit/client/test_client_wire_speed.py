"""What the SDK does per request so that classify_many keeps up with a plain tritonclient loop.

Found by profiling ``medserve_bench.sdk_speed`` (see its docstring): the async
``classify_many`` held only ``max_concurrency`` requests in flight whatever its
``concurrency`` said, and hopped to a worker thread to check arrays that need
no preparation. These tests pin the behaviour that removed those costs.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import numpy as np
import pytest

from medserve_client import AsyncClient
from medserve_client._core import stack_batch
from medserve_client._inputs import ready_tensors
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
