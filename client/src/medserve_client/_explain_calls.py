"""``Client.explain`` and ``AsyncClient.explain``: read, split, send, answer in order.

Usage (through the clients)::

    explanations = client.explain(["scan.png", "ct.dcm"], class_index="lesion")
    explanations = await async_client.explain("scan.png")

Both run the same steps as ``classify``: the classifier's model info (labels,
input size) is read once; the class is checked against the labels before
anything is sent; inputs are prepared locally (DICOM windowing, resizing)
and split into requests of at most the explain model's ``max_batch_size``,
sent concurrently, each retried within the call's deadline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from medserve_client import _core, _explain, contract
from medserve_client._inputs import prepare_all
from medserve_client._models import Explanation, ModelInfo
from medserve_client._retry import Deadline

if TYPE_CHECKING:
    from medserve_client._async_client import AsyncClient
    from medserve_client._client import Client


def explain_blocking(
    client: Client, inputs: Any, *, class_index: int | str | None, timeout_s: float | None
) -> list[Explanation]:
    """The body of :meth:`Client.explain`."""
    items, _single = _core.as_list(inputs)
    info = client.model_info()
    index = _explain.resolve_class_index(class_index, info.labels)
    if not items:
        return []
    entry = _entry_blocking(client)
    deadline = Deadline(timeout_s or client.endpoint.timeout.request_s)
    prepared = prepare_all(
        items, encoded=False, target_hw=info.image_size, max_pixels=client.max_pixels
    )
    chunks = _core.split_batches(prepared, max(1, entry.max_batch_size))
    pool = client._pool()
    futures = [
        pool.submit(_send_blocking, client, chunk, entry, info, index, deadline) for chunk in chunks
    ]
    return [item for future in futures for item in future.result()]


def _entry_blocking(client: Client) -> _explain.ExplainEntry:
    with client._lock:
        if client._explain is not None:
            return client._explain
    name, wire, version = contract.explain_model(client.model), client._wire(), client.version
    name_version = version or ""

    def fetch(remaining_s: float) -> _explain.ExplainEntry:
        metadata = wire.model_metadata(name, name_version, timeout_s=remaining_s)
        config = wire.model_config(name, name_version, timeout_s=remaining_s)
        return _explain.explain_entry_from(metadata, config)

    entry: _explain.ExplainEntry = client._call(f"model info of {name!r}", fetch)
    with client._lock:
        client._explain = entry
    return entry


def _send_blocking(
    client: Client,
    chunk: Sequence[Any],
    entry: _explain.ExplainEntry,
    info: ModelInfo,
    index: int,
    deadline: Deadline,
) -> list[Explanation]:
    wire = client._wire()
    call = _explain.explain_call(entry, chunk, index, version=client.version or "")

    def attempt(remaining_s: float) -> list[Explanation]:
        started = time.perf_counter()
        reply = wire.infer(replace(call, timeout_s=remaining_s))
        latency_ms = (time.perf_counter() - started) * 1000.0
        return _explain.to_explanations(reply, entry, info, chunk, index, latency_ms=latency_ms)

    return list(client._call(f"explain on {entry.name!r}", attempt, deadline))


async def explain_async(
    client: AsyncClient, inputs: Any, *, class_index: int | str | None, timeout_s: float | None
) -> list[Explanation]:
    """The body of :meth:`AsyncClient.explain`."""
    items, _single = _core.as_list(inputs)
    info = await client.model_info()
    index = _explain.resolve_class_index(class_index, info.labels)
    if not items:
        return []
    entry = await _entry_async(client)
    deadline = Deadline(timeout_s or client.endpoint.timeout.request_s)
    prepared = await asyncio.to_thread(
        prepare_all, items, encoded=False, target_hw=info.image_size, max_pixels=client.max_pixels
    )
    chunks = _core.split_batches(prepared, max(1, entry.max_batch_size))
    results = await asyncio.gather(
        *(_send_async(client, chunk, entry, info, index, deadline) for chunk in chunks)
    )
    return [item for chunk in results for item in chunk]


async def _entry_async(client: AsyncClient) -> _explain.ExplainEntry:
    if client._explain is None:
        name, wire = contract.explain_model(client.model), client._wire()
        version = client.version or ""

        async def fetch(remaining_s: float) -> _explain.ExplainEntry:
            metadata = await wire.model_metadata(name, version, timeout_s=remaining_s)
            config = await wire.model_config(name, version, timeout_s=remaining_s)
            return _explain.explain_entry_from(metadata, config)

        client._explain = await client._call(f"model info of {name!r}", fetch)
    return client._explain


async def _send_async(
    client: AsyncClient,
    chunk: Sequence[Any],
    entry: _explain.ExplainEntry,
    info: ModelInfo,
    index: int,
    deadline: Deadline,
) -> list[Explanation]:
    if client._semaphore is None:
        client._semaphore = asyncio.Semaphore(client.max_concurrency)
    async with client._semaphore:
        wire = client._wire()
        call = _explain.explain_call(entry, chunk, index, version=client.version or "")

        async def attempt(remaining_s: float) -> list[Explanation]:
            started = time.perf_counter()
            reply = await wire.infer(replace(call, timeout_s=remaining_s))
            latency_ms = (time.perf_counter() - started) * 1000.0
            return _explain.to_explanations(reply, entry, info, chunk, index, latency_ms=latency_ms)

        return await client._call(f"explain on {entry.name!r}", attempt, deadline)
