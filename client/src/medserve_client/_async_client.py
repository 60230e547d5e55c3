"""The asyncio client: the same surface as :class:`~medserve_client.Client`, awaitable.

Usage::

    import asyncio
    from medserve_client import AsyncClient

    async def main(paths):
        async with AsyncClient("127.0.0.1:8001") as client:
            await client.wait_until_ready(timeout_s=30)
            async for prediction in client.classify_many(paths, concurrency=16):
                print(prediction.label, prediction.score)

    asyncio.run(main(["chest.png", "ct.dcm"]))

One :class:`AsyncClient` belongs to one event loop. Decoding and resizing
run in worker threads (``asyncio.to_thread``) so the loop keeps requests in
flight while images are prepared; uint8 arrays already at the model's size
need neither and are only checked, on the loop.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Sequence,
)
from typing import Any, TypeVar

import numpy as np

from medserve_client import _core, contract
from medserve_client._async_transports import AsyncTransport, open_async_transport
from medserve_client._base import BaseClient
from medserve_client._errors import (
    ModelNotReadyError,
    ServerUnavailableError,
)
from medserve_client._inputs import prepare_all, ready_tensors
from medserve_client._models import Explanation, ModelInfo, Prediction
from medserve_client._pipeline import ordered_map_async
from medserve_client._retry import Deadline, call_with_retry_async
from medserve_client._shm import pool_for, shm_request
from medserve_client._transport import InferCall

log = logging.getLogger("medserve_client")
T = TypeVar("T")


class AsyncClient(BaseClient[AsyncTransport]):
    """An asyncio medserve client; arguments as for :class:`~medserve_client.Client`.

    The one difference: ``transport`` is an
    :class:`~medserve_client._async_transports.AsyncTransport`.
    """

    def _init_state(self) -> None:
        # Created on first use, so that it belongs to the loop that uses the client.
        self._semaphore: asyncio.Semaphore | None = None

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Unregister and unlink shared memory and close the connection."""
        if self._closed:
            return
        self._closed = True
        transport, shm, self._shm = self._transport, self._shm, None
        try:
            if shm is not None:
                names = [name for name in shm.names]
                if transport is not None:
                    for name in names:
                        try:
                            await transport.unregister_shm(
                                name, timeout_s=self.endpoint.timeout.connect_s
                            )
                        except Exception as exc:  # Server gone: unlink anyway.
                            log.warning("could not unregister shared memory %s: %s", name, exc)
                shm.close(None)
        finally:
            if transport is not None:
                await transport.close()

    def _wire(self) -> AsyncTransport:
        if self._closed:
            raise self._closed_error()
        if self._transport is None:
            self._transport = open_async_transport(self.endpoint)
        return self._transport

    async def _call(
        self, what: str, attempt: Callable[[float], Awaitable[T]], deadline: Deadline | None = None
    ) -> T:
        deadline = deadline or Deadline(self.endpoint.timeout.request_s)
        return await call_with_retry_async(attempt, retry=self.retry, deadline=deadline, what=what)

    async def ready(self) -> bool:
        """True when the server is reachable and the model is ready."""
        try:
            await self.check_ready()
        except (ServerUnavailableError, ModelNotReadyError) as exc:
            log.debug("not ready: %s", exc)
            return False
        return True

    async def check_ready(self) -> None:
        """Probe once; raises as :meth:`Client.check_ready` does."""
        wire, timeout_s = self._wire(), self.endpoint.timeout.connect_s
        server_ready = await wire.server_ready(timeout_s=timeout_s)
        if not server_ready or not await wire.model_ready(
            self.model, self.version or "", timeout_s=timeout_s
        ):
            raise self._readiness_error(server_ready=server_ready)

    async def wait_until_ready(self, timeout_s: float = 60.0, *, poll_s: float = 0.25) -> None:
        """Wait until :meth:`ready`; raises as :meth:`Client.wait_until_ready` does."""
        deadline, wire, server_seen = Deadline(timeout_s), self._wire(), False
        while True:
            probe_s = max(0.05, min(self.endpoint.timeout.connect_s, deadline.remaining_s()))
            try:
                if await wire.server_ready(timeout_s=probe_s):
                    server_seen = True
                    if await wire.model_ready(self.model, self.version or "", timeout_s=probe_s):
                        return
            except (ServerUnavailableError, ModelNotReadyError):
                pass
            if deadline.remaining_s() <= poll_s:
                break
            await asyncio.sleep(poll_s)
        raise self._not_ready_error(server_seen=server_seen, timeout_s=timeout_s)

    async def model_info(self) -> ModelInfo:
        """Model facts from the server's metadata and config (cached)."""
        if self._closed:
            raise self._closed_error()
        if self._info is not None:
            return self._info
        wire, version = self._wire(), self.version or ""

        async def fetch(remaining_s: float) -> ModelInfo:
            metadata = await wire.model_metadata(self.model, version, timeout_s=remaining_s)
            config = await wire.model_config(self.model, version, timeout_s=remaining_s)
            info, labelled = self._info_without_labels(metadata, config)
            if not labelled:
                return info
            reply = await wire.infer(
                _core.label_call(info, model=self.model, version=version, timeout_s=remaining_s)
            )
            return self._info_with_labels(metadata, config, info, reply.outputs[info.output_name])

        info = self._check_medserve_model(await self._call(f"model info of {self.model!r}", fetch))
        self._info = info
        return info

    async def _encoded_entry(self) -> contract.EncodedEntry:
        if self._encoded is None:
            name, wire = contract.encoded_model(self.model), self._wire()

            async def fetch(remaining_s: float) -> contract.EncodedEntry:
                metadata = await wire.model_metadata(name, "", timeout_s=remaining_s)
                config = await wire.model_config(name, "", timeout_s=remaining_s)
                return contract.encoded_entry_from(metadata, config)

            self._encoded = await self._call(f"model info of {name!r}", fetch)
        return self._encoded

    async def explain(
        self, inputs: Any, *, class_index: int | str | None = None, timeout_s: float | None = None
    ) -> list[Explanation]:
        """Grad-CAM explanations, supportive only (see :meth:`Client.explain`)."""
        from medserve_client._explain_calls import explain_async

        return await explain_async(self, inputs, class_index=class_index, timeout_s=timeout_s)

    async def classify(
        self, inputs: Any, *, top_k: int = 1, timeout_s: float | None = None
    ) -> list[Prediction]:
        """Classify one input or many (see :meth:`Client.classify`)."""
        _core.check_top_k(top_k)
        items, _ = _core.as_list(inputs)
        if not items:
            return []
        await self.model_info()  # Cached; outside the deadline of this call.
        deadline = Deadline(timeout_s or self.endpoint.timeout.request_s)
        return await self._classify_items(items, top_k=top_k, deadline=deadline)

    async def classify_many(
        self, inputs: Iterable[Any] | AsyncIterable[Any], *, concurrency: int = 8, top_k: int = 1
    ) -> AsyncIterator[Prediction]:
        """Classify a stream, one request per input, ``concurrency`` in flight, in order."""
        _core.check_top_k(top_k)
        await self.model_info()

        async def one(item: Any, index: int) -> Prediction:
            deadline = Deadline(self.endpoint.timeout.request_s)
            items = await self._classify_items([item], top_k=top_k, deadline=deadline, first=index)
            return items[0]

        async for prediction in ordered_map_async(one, inputs, concurrency=concurrency):
            yield prediction

    async def _classify_items(
        self, items: Sequence[Any], *, top_k: int, deadline: Deadline, first: int = 0
    ) -> list[Prediction]:
        info = await self.model_info()
        entry = await self._encoded_entry() if self.send_encoded else None
        prepare = functools.partial(
            prepare_all,
            items,
            encoded=self.send_encoded,
            target_hw=info.image_size,
            max_pixels=self.max_pixels,
            first=first,
        )
        if ready_tensors(items, encoded=self.send_encoded, target_hw=info.image_size):
            # Only checked, never decoded or resized: a hop to a worker thread
            # and back would cost more than the check (profiled).
            prepared = prepare()
        else:
            prepared = await asyncio.to_thread(prepare)
        limit = entry.max_batch_size if entry is not None else info.max_batch_size
        chunks = _core.split_batches(prepared, max(1, limit))
        if len(chunks) == 1:
            # One request (classify_many's case): no task, no semaphore; the
            # caller's own concurrency bounds what is in flight.
            return await self._send(chunks[0], info, top_k, deadline)
        results = await asyncio.gather(
            *(self._send_split(c, info, top_k, deadline) for c in chunks)
        )
        return [prediction for chunk in results for prediction in chunk]

    async def _send_split(
        self, chunk: Sequence[Any], info: ModelInfo, top_k: int, deadline: Deadline
    ) -> list[Prediction]:
        """One of the requests of a split call: at most ``max_concurrency`` in flight."""
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.max_concurrency)
        async with self._semaphore:
            return await self._send(chunk, info, top_k, deadline)

    async def _send(
        self, chunk: Sequence[Any], info: ModelInfo, top_k: int, deadline: Deadline
    ) -> list[Prediction]:
        wire = self._wire()
        if self.send_encoded:
            call = _core.encoded_call(await self._encoded_entry(), chunk)
            return await self._infer(wire, call, info, top_k, deadline, None)
        version = self.version or ""
        call = _core.tensor_call(info, model=self.model, version=version, chunk=chunk)
        if not self.shared_memory:
            return await self._infer(wire, call, info, top_k, deadline, None)
        if self._shm is None:
            self._shm = pool_for(info)
        pool = self._shm
        slot, is_new = pool.acquire()
        try:
            if is_new:
                await self._call(
                    "register shared memory",
                    lambda remaining_s: wire.register_shm(
                        slot.name, slot.key, slot.byte_size, timeout_s=remaining_s
                    ),
                    deadline,
                )
                slot.registered = True
            request, out_shape = shm_request(slot, call, info)
            return await self._infer(
                wire,
                request,
                info,
                top_k,
                deadline,
                lambda: slot.read_output(np.float32, out_shape),
            )
        finally:
            pool.release(slot)

    async def _infer(
        self,
        wire: AsyncTransport,
        call: InferCall,
        info: ModelInfo,
        top_k: int,
        deadline: Deadline,
        read_shm: Callable[[], Any] | None,
    ) -> list[Prediction]:
        from dataclasses import replace

        async def attempt(remaining_s: float) -> list[Prediction]:
            started = time.perf_counter()
            reply = await wire.infer(replace(call, timeout_s=remaining_s))
            latency_ms = (time.perf_counter() - started) * 1000.0
            name = call.outputs[0].name
            values = read_shm() if read_shm is not None else reply.outputs[name]
            return _core.to_predictions(
                values,
                info=info,
                top_k=top_k,
                model_version=reply.model_version,
                latency_ms=latency_ms,
                model_name=call.model,
            )

        return await self._call(f"infer on {call.model!r}", attempt, deadline)
