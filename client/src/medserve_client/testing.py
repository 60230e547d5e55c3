"""A transport without a socket, for your own tests of code that uses the client.

Usage::

    import numpy as np
    from medserve_client import Client, AsyncClient, ServerOverloadedError
    from medserve_client.testing import AsyncMockTransport, MockTransport

    transport = MockTransport(labels=("normal", "lesion"), size=16)
    with Client("triton:8001", transport=transport) as client:
        prediction = client.classify(np.full((16, 16, 3), 200, np.uint8))[0]
    prediction.label                      # "lesion": the default model answers brightness
    transport.calls[-1].model             # "medcnn": every inference request is recorded

    transport.failures.append(TimeoutError("slow"))   # the next infer fails like a real one
    async with AsyncClient("triton:8001", transport=AsyncMockTransport(transport)) as client:
        ...

:class:`MockTransport` plays a small medserve model the way Triton serves one
(in the spirit of ``httpx.MockTransport``): model metadata and config in
Triton's JSON form, the label file through the classification extension, a
``<model>_encoded`` entry point that decodes PNG/JPEG bytes, shared-memory
inputs and outputs, and dynamic batching limits. Its answer is
``answer(batch)``; by default the probability of the last class is the mean
brightness of each image, so a test can tell which input produced which
output. Errors queued in :attr:`MockTransport.failures` are mapped to the
client's exception tree at the same boundary as the real transports'.

The client talks to any object with the methods of
:class:`~medserve_client.transport.Transport` (blocking) or
:class:`~medserve_client.transport.AsyncTransport` (asyncio).
"""

from __future__ import annotations

import asyncio
import io
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing import shared_memory
from typing import Any

import numpy as np
import numpy.typing as npt

from medserve_client import contract
from medserve_client._transport import Endpoint, InferCall, InferReply, mapped

__all__ = ["AsyncMockTransport", "MockTransport", "brightness"]


def brightness(batch: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
    """The default answer for two classes: p(last class) = mean brightness of each image."""
    flat = batch.reshape(batch.shape[0], -1).astype(np.float64)
    last = flat.mean(axis=1) / 255.0
    return np.stack([1.0 - last, last], axis=1).astype(np.float32)


@dataclass
class MockTransport:
    """A blocking transport that answers like a small medserve model, without a socket.

    Attributes:
        model: Name of the classifier (``<model>_encoded`` is its bytes entry point).
        labels: Class names, served through the classification extension.
        size: Height and width of the served input.
        max_batch_size: Largest batch a request may carry (0: no batching).
        versions: Versions the metadata lists; answers come from the last one.
        label_file: Whether the classifier's config attaches its label file
            (without it a client names the classes by index, with a warning).
        answer: Probabilities for a ``(n, size, size, 3)`` uint8 batch.
        calls: Every inference request received, in order (the label probe included).
        failures: Exceptions the next inference requests raise, one each, mapped
            to the client's exception tree like a real transport's.
        delay_s: Seconds each inference request takes.
        on_infer: Called with each inference request before it is answered.
        registered: Shared-memory regions registered, by name: ``(key, byte_size)``.
        unregistered: Names of the regions unregistered, in order.
        closed: Whether the client closed the transport.
        max_in_flight: Most inference requests seen at the same time.
    """

    model: str = "medcnn"
    labels: tuple[str, ...] = ("normal", "lesion")
    size: int = 16
    max_batch_size: int = 4
    versions: tuple[str, ...] = ("1", "2")
    label_file: bool = True
    answer: Callable[[npt.NDArray[Any]], npt.NDArray[np.float32]] = brightness
    endpoint: Endpoint = field(default_factory=lambda: Endpoint(url="mock:0"))
    calls: list[InferCall] = field(default_factory=list)
    failures: list[BaseException] = field(default_factory=list)
    delay_s: float = 0.0
    on_infer: Callable[[InferCall], None] | None = None
    registered: dict[str, tuple[str, int]] = field(default_factory=dict)
    unregistered: list[str] = field(default_factory=list)
    closed: bool = False
    in_flight: int = 0
    max_in_flight: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def encoded_model(self) -> str:
        """The bytes entry point's name."""
        return contract.encoded_model(self.model)

    def server_ready(self, *, timeout_s: float) -> bool:
        """Always ready."""
        return True

    def model_ready(self, model: str, version: str, *, timeout_s: float) -> bool:
        """Ready for the classifier and its bytes entry point."""
        return model in (self.model, self.encoded_model)

    def model_metadata(self, model: str, version: str, *, timeout_s: float) -> dict[str, Any]:
        """KServe v2 metadata in gRPC's JSON form (int64 dimensions as strings)."""
        classes = str(len(self.labels))
        output = {"name": contract.OUTPUT_NAME, "datatype": "FP32", "shape": ["-1", classes]}
        if model == self.encoded_model:
            return {
                "name": model,
                "versions": ["1"],
                "platform": "ensemble",
                "inputs": [
                    {"name": contract.ENCODED_INPUT_NAME, "datatype": "BYTES", "shape": ["-1", "1"]}
                ],
                "outputs": [output],
            }
        dims = [str(self.size), str(self.size), "3"]
        return {
            "name": model,
            "versions": list(self.versions),
            "platform": "python",
            "inputs": [
                {
                    "name": contract.INPUT_NAME,
                    "datatype": "UINT8",
                    "shape": (["-1"] if self.max_batch_size else []) + dims,
                }
            ],
            "outputs": [output],
        }

    def model_config(self, model: str, version: str, *, timeout_s: float) -> dict[str, Any]:
        """Triton's model config (JSON form), with the label file on the classifier."""
        output: dict[str, Any] = {
            "name": contract.OUTPUT_NAME,
            "data_type": "TYPE_FP32",
            "dims": [len(self.labels)],
        }
        if model == self.model and self.label_file:
            output["label_filename"] = "labels.txt"
        return {"name": model, "max_batch_size": self.max_batch_size, "output": [output]}

    def infer(self, call: InferCall) -> InferReply:
        """Record ``call``, then fail with the next queued failure or answer it."""
        with self._lock:
            self.calls.append(call)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            failure = self.failures.pop(0) if self.failures else None
        try:
            if self.on_infer is not None:
                self.on_infer(call)
            if self.delay_s:
                time.sleep(self.delay_s)
            if failure is not None:
                with mapped(
                    self.endpoint, model=call.model, timeout_s=call.timeout_s, action="infer"
                ):
                    raise failure
            return self._reply(call)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _batch(self, call: InferCall) -> npt.NDArray[Any]:
        if call.datatype == "BYTES":
            from PIL import Image

            assert call.array is not None
            items = call.array.reshape(-1)
            return np.stack(
                [
                    np.asarray(
                        Image.open(io.BytesIO(item)).convert("RGB").resize((self.size, self.size))
                    )
                    for item in items
                ]
            )
        if call.shm_region is not None:
            segment = shared_memory.SharedMemory(name=call.shm_region)
            try:
                view: npt.NDArray[np.uint8] = np.ndarray(
                    call.shape, dtype=np.uint8, buffer=segment.buf
                )
                batch = view.copy()
                del view
            finally:
                segment.close()
        else:
            assert call.array is not None
            batch = call.array
        return batch if self.max_batch_size else batch[np.newaxis]

    def _reply(self, call: InferCall) -> InferReply:
        batch = self._batch(call)
        expected = (self.size, self.size, 3)
        if batch.shape[1:] != expected or batch.dtype != np.uint8:
            raise AssertionError(
                f"the mock got {batch.dtype}{list(batch.shape)}, not uint8{expected}"
            )
        if self.max_batch_size and batch.shape[0] > self.max_batch_size:
            raise AssertionError(
                f"batch of {batch.shape[0]} over max_batch_size {self.max_batch_size}"
            )
        probabilities = np.asarray(self.answer(batch), dtype=np.float32)
        outputs: dict[str, npt.NDArray[Any]] = {}
        for spec in call.outputs:
            if spec.class_count:
                rows = []
                for row in probabilities:
                    order = np.argsort(-row)[: spec.class_count]
                    rows.append([f"{row[i]:f}:{i}:{self.labels[i]}".encode() for i in order])
                outputs[spec.name] = np.array(rows, dtype=np.object_)
            elif spec.shm_region is not None:
                segment = shared_memory.SharedMemory(name=spec.shm_region)
                try:
                    out: npt.NDArray[np.float32] = np.ndarray(
                        probabilities.shape, np.float32, buffer=segment.buf, offset=spec.shm_offset
                    )
                    out[...] = probabilities
                    del out
                finally:
                    segment.close()
            else:
                outputs[spec.name] = probabilities if self.max_batch_size else probabilities[0]
        return InferReply(outputs=outputs, model_version=self.versions[-1])

    def register_shm(self, name: str, key: str, byte_size: int, *, timeout_s: float) -> None:
        """Record a shared-memory registration."""
        self.registered[name] = (key, byte_size)

    def unregister_shm(self, name: str, *, timeout_s: float) -> None:
        """Record a shared-memory unregistration."""
        self.unregistered.append(name)

    def close(self) -> None:
        """Mark the transport closed."""
        self.closed = True


class AsyncMockTransport:
    """A :class:`MockTransport` behind the asyncio interface (same records, same answers)."""

    def __init__(self, mock: MockTransport | None = None) -> None:
        """Wrap ``mock`` (a new default one if ``None``)."""
        self.mock = mock or MockTransport()
        self.endpoint = self.mock.endpoint

    async def server_ready(self, *, timeout_s: float) -> bool:
        """See :meth:`MockTransport.server_ready`."""
        return self.mock.server_ready(timeout_s=timeout_s)

    async def model_ready(self, model: str, version: str, *, timeout_s: float) -> bool:
        """See :meth:`MockTransport.model_ready`."""
        return self.mock.model_ready(model, version, timeout_s=timeout_s)

    async def model_metadata(self, model: str, version: str, *, timeout_s: float) -> dict[str, Any]:
        """See :meth:`MockTransport.model_metadata`."""
        return self.mock.model_metadata(model, version, timeout_s=timeout_s)

    async def model_config(self, model: str, version: str, *, timeout_s: float) -> dict[str, Any]:
        """See :meth:`MockTransport.model_config`."""
        return self.mock.model_config(model, version, timeout_s=timeout_s)

    async def infer(self, call: InferCall) -> InferReply:
        """See :meth:`MockTransport.infer`; runs in a thread so requests overlap."""
        return await asyncio.to_thread(self.mock.infer, call)

    async def register_shm(self, name: str, key: str, byte_size: int, *, timeout_s: float) -> None:
        """See :meth:`MockTransport.register_shm`."""
        self.mock.register_shm(name, key, byte_size, timeout_s=timeout_s)

    async def unregister_shm(self, name: str, *, timeout_s: float) -> None:
        """See :meth:`MockTransport.unregister_shm`."""
        self.mock.unregister_shm(name, timeout_s=timeout_s)

    async def close(self) -> None:
        """See :meth:`MockTransport.close`."""
        self.mock.close()
