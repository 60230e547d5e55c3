"""Test doubles of the client unit tests: a fake transport (no socket), its asyncio twin, images.

The fake plays a tiny medserve model: a 16x16 UINT8 input, labels
("normal", "lesion"), ``max_batch_size`` 4, and an ``_encoded`` twin. Its
"probabilities" are a deterministic function of the pixels (the mean
brightness), so a test can tell which input produced which output.
"""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing import shared_memory
from typing import Any

import numpy as np
from PIL import Image

from medserve_client._transport import Endpoint, InferCall, InferReply, mapped

LABELS = ("normal", "lesion")
SIZE = 16


def fake_probabilities(batch: np.ndarray) -> np.ndarray:
    """What the fake model answers: p(lesion) = mean brightness of each image."""
    flat = batch.reshape(batch.shape[0], -1).astype(np.float64)
    lesion = flat.mean(axis=1) / 255.0
    return np.stack([1.0 - lesion, lesion], axis=1).astype(np.float32)


def first_image_calls_meet(parties: int, timeout_s: float = 60.0) -> Callable[[InferCall], None]:
    """An ``on_infer`` hook: the first ``parties`` image requests wait for one another.

    Proves that requests are in flight together without relying on timing: the
    calls pass only once ``parties`` of them are inside the transport at once
    (a client that sends one at a time breaks the barrier after ``timeout_s``).
    Label requests (``class_count`` > 0) pass straight through.
    """
    barrier = threading.Barrier(parties, timeout=timeout_s)
    lock = threading.Lock()
    arrived = [0]

    def hook(call: InferCall) -> None:
        if call.outputs and call.outputs[0].class_count:
            return
        with lock:
            arrived[0] += 1
            mine = arrived[0]
        if mine <= parties:
            barrier.wait()

    return hook


@dataclass
class FakeTransport:
    """A :class:`~medserve_client._transport.Transport` without a socket."""

    max_batch_size: int = 4
    labels: tuple[str, ...] = LABELS
    size: int = SIZE
    endpoint: Any = None
    calls: list[InferCall] = field(default_factory=list)
    registered: dict[str, tuple[str, int]] = field(default_factory=dict)
    unregistered: list[str] = field(default_factory=list)
    failures: list[BaseException] = field(default_factory=list)
    closed: bool = False
    in_flight: int = 0
    max_in_flight: int = 0
    on_infer: Callable[[InferCall], None] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def server_ready(self, *, timeout_s: float) -> bool:
        return True

    def model_ready(self, model: str, version: str, *, timeout_s: float) -> bool:
        return model in ("medcnn", "medcnn_encoded")

    def model_metadata(self, model: str, version: str, *, timeout_s: float) -> dict[str, Any]:
        if model == "medcnn_encoded":
            return {
                "name": model,
                "versions": ["1"],
                "platform": "ensemble",
                "inputs": [{"name": "image_bytes", "datatype": "BYTES", "shape": ["-1", "1"]}],
                "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": ["-1", "2"]}],
            }
        # gRPC's JSON form: int64 dims as strings.
        return {
            "name": model,
            "versions": ["1", "2"],
            "platform": "python",
            "inputs": [
                {
                    "name": "image",
                    "datatype": "UINT8",
                    "shape": ["-1", str(self.size), str(self.size), "3"],
                }
            ],
            "outputs": [
                {
                    "name": "probabilities",
                    "datatype": "FP32",
                    "shape": ["-1", str(len(self.labels))],
                }
            ],
        }

    def model_config(self, model: str, version: str, *, timeout_s: float) -> dict[str, Any]:
        output = {"name": "probabilities", "data_type": "TYPE_FP32", "dims": [len(self.labels)]}
        if model == "medcnn":
            output["label_filename"] = "labels.txt"
        return {"name": model, "max_batch_size": self.max_batch_size, "output": [output]}

    def infer(self, call: InferCall) -> InferReply:
        with self._lock:
            self.calls.append(call)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            failure = self.failures.pop(0) if self.failures else None
        try:
            if self.on_infer is not None:
                self.on_infer(call)
            if failure is not None:
                # The real transports map at this boundary; so does the fake.
                with mapped(
                    Endpoint(url="127.0.0.1:1"), model=call.model, timeout_s=1.0, action="infer"
                ):
                    raise failure
            return self._answer(call)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _answer(self, call: InferCall) -> InferReply:
        if call.datatype == "BYTES":
            assert call.array is not None
            images = [
                np.asarray(
                    Image.open(io.BytesIO(item)).convert("RGB").resize((self.size, self.size))
                )
                for item in call.array[:, 0]
            ]
            batch = np.stack(images)
        elif call.shm_region is not None:
            segment = shared_memory.SharedMemory(name=call.shm_region)
            try:
                view: np.ndarray = np.ndarray(call.shape, dtype=np.uint8, buffer=segment.buf)
                batch = view.copy()
                del view
            finally:
                segment.close()
        else:
            assert call.array is not None
            batch = call.array
        assert batch.shape[1:] == (self.size, self.size, 3), batch.shape
        assert batch.shape[0] <= self.max_batch_size
        probabilities = fake_probabilities(batch)
        outputs: dict[str, np.ndarray] = {}
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
                    view = np.ndarray(
                        probabilities.shape, np.float32, buffer=segment.buf, offset=spec.shm_offset
                    )
                    view[...] = probabilities
                    del view
                finally:
                    segment.close()
            else:
                outputs[spec.name] = probabilities
        return InferReply(outputs=outputs, model_version="2")

    def register_shm(self, name: str, key: str, byte_size: int, *, timeout_s: float) -> None:
        self.registered[name] = (key, byte_size)

    def unregister_shm(self, name: str, *, timeout_s: float) -> None:
        self.unregistered.append(name)

    def statistics(self, model: str, *, timeout_s: float) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        self.closed = True


class AsyncFake:
    """The fake transport behind the asyncio interface."""

    def __init__(self, fake: FakeTransport) -> None:
        self.fake = fake
        self.endpoint = None

    async def server_ready(self, *, timeout_s: float) -> bool:
        return self.fake.server_ready(timeout_s=timeout_s)

    async def model_ready(self, model: str, version: str, *, timeout_s: float) -> bool:
        return self.fake.model_ready(model, version, timeout_s=timeout_s)

    async def model_metadata(self, model: str, version: str, *, timeout_s: float) -> Any:
        return self.fake.model_metadata(model, version, timeout_s=timeout_s)

    async def model_config(self, model: str, version: str, *, timeout_s: float) -> Any:
        return self.fake.model_config(model, version, timeout_s=timeout_s)

    async def infer(self, call: InferCall) -> InferReply:
        return await asyncio.to_thread(self.fake.infer, call)

    async def register_shm(self, name: str, key: str, byte_size: int, *, timeout_s: float) -> None:
        self.fake.register_shm(name, key, byte_size, timeout_s=timeout_s)

    async def unregister_shm(self, name: str, *, timeout_s: float) -> None:
        self.fake.unregister_shm(name, timeout_s=timeout_s)

    async def close(self) -> None:
        self.fake.close()


def png_bytes(array: np.ndarray, **save: Any) -> bytes:
    """Encode an array as PNG."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", **save)
    return buffer.getvalue()


def gray(value: int, size: int = SIZE, channels: int = 3) -> np.ndarray:
    """A flat uint8 image of one brightness."""
    return np.full((size, size, channels), value, dtype=np.uint8)
