"""System shared memory for a client on the same host as Triton.

Usage::

    pool = ShmPool(input_bytes=64 * 224 * 224 * 3, output_bytes=64 * 2 * 4)
    slot, is_new = pool.acquire()
    if is_new:
        transport.register_shm(slot.name, slot.key, slot.byte_size, timeout_s=5.0)
    try:
        slot.write_input(batch)             # then infer with the slot's regions
        probabilities = slot.read_output(np.float32, (len(batch), 2))
    finally:
        pool.release(slot)
    pool.close(unregister=lambda name: transport.unregister_shm(name, timeout_s=5.0))

Each slot is one POSIX shared-memory segment that holds one request's input
and, after it, the output. Slots are created on demand (one per request in
flight), registered with the server once and reused; :meth:`ShmPool.close`
unregisters them from the server and unlinks them, and a finalizer unlinks
them even when a client is garbage-collected without ``close()`` so nothing
is left in ``/dev/shm``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import uuid
import weakref
from collections.abc import Callable
from dataclasses import replace
from multiprocessing import shared_memory
from typing import Any

import numpy as np
import numpy.typing as npt

from medserve_client._errors import InferenceError
from medserve_client._models import ModelInfo
from medserve_client._transport import InferCall, OutputSpec

log = logging.getLogger("medserve_client")

_ALIGN_BYTES = 64


class ShmSlot:
    """One registered region: input at offset 0, output at :attr:`output_offset`."""

    def __init__(self, input_bytes: int, output_bytes: int) -> None:
        """Create (not register) a segment big enough for one full batch."""
        self.output_offset = -(-input_bytes // _ALIGN_BYTES) * _ALIGN_BYTES
        self.byte_size = self.output_offset + output_bytes
        self.name = f"medserve-client-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        try:
            self._segment = shared_memory.SharedMemory(
                name=self.name, create=True, size=self.byte_size
            )
        except OSError as exc:
            raise InferenceError(
                f"cannot create a {self.byte_size}-byte shared-memory segment "
                f"({exc.strerror}); check /dev/shm or use shared_memory=False"
            ) from exc
        self.registered = False

    @property
    def key(self) -> str:
        """The POSIX ``shm_open`` key Triton maps (the name with a leading slash)."""
        return "/" + self.name

    def write_input(self, array: npt.NDArray[Any]) -> int:
        """Copy a contiguous batch into the input area; returns its byte size."""
        if array.nbytes > self.output_offset:
            raise InferenceError("batch larger than the shared-memory slot")
        view: npt.NDArray[Any] = np.ndarray(
            array.shape, dtype=array.dtype, buffer=self._segment.buf
        )
        view[...] = array
        del view  # Release the buffer export so the segment can close later.
        return int(array.nbytes)

    def read_output(self, dtype: npt.DTypeLike, shape: tuple[int, ...]) -> npt.NDArray[Any]:
        """Copy the output the server wrote after the input."""
        view: npt.NDArray[Any] = np.ndarray(
            shape, dtype=dtype, buffer=self._segment.buf, offset=self.output_offset
        )
        result = view.copy()
        del view
        return result

    def destroy(self) -> None:
        """Close and unlink the segment (idempotent)."""
        _destroy_segment(self._segment)


def _destroy_segment(segment: shared_memory.SharedMemory) -> None:
    try:
        segment.close()
    except BufferError:  # A numpy view still alive; unlinking still frees the name.
        log.debug("shared-memory segment %s still has views", segment.name)
    with contextlib.suppress(FileNotFoundError):
        segment.unlink()


class ShmPool:
    """Thread-safe pool of :class:`ShmSlot`; created lazily, reused, destroyed on close."""

    def __init__(self, *, input_bytes: int, output_bytes: int) -> None:
        """Size every slot for one full batch: ``input_bytes`` plus ``output_bytes``."""
        self.input_bytes = input_bytes
        self.output_bytes = output_bytes
        self._lock = threading.Lock()
        self._free: list[ShmSlot] = []
        self._all: list[ShmSlot] = []
        self._closed = False
        # If the owner forgets close(), unlink the segments at collection/exit.
        self._finalizer = weakref.finalize(self, _destroy_all, self._all)

    def acquire(self) -> tuple[ShmSlot, bool]:
        """A free slot, or a new one; the flag is True when it must be registered first."""
        with self._lock:
            if self._closed:
                raise InferenceError("the client is closed")
            if self._free:
                return self._free.pop(), False
            slot = ShmSlot(self.input_bytes, self.output_bytes)
            self._all.append(slot)
            return slot, True

    def release(self, slot: ShmSlot) -> None:
        """Give a slot back; an unregistered one (registration failed) is destroyed."""
        with self._lock:
            if slot.registered and not self._closed:
                self._free.append(slot)
                return
            if slot in self._all:
                self._all.remove(slot)
        slot.destroy()

    @property
    def names(self) -> list[str]:
        """Names of every live slot (for tests and diagnostics)."""
        with self._lock:
            return [slot.name for slot in self._all]

    def close(self, unregister: Callable[[str], None] | None = None) -> None:
        """Unregister every slot from the server (best effort), then unlink them all."""
        with self._lock:
            self._closed = True
            slots, self._all[:], self._free = list(self._all), [], []
        for slot in slots:
            if slot.registered and unregister is not None:
                try:
                    unregister(slot.name)
                except Exception as exc:  # The server may be gone; unlink anyway.
                    log.warning("could not unregister shared memory %s: %s", slot.name, exc)
            slot.destroy()


def _destroy_all(slots: list[ShmSlot]) -> None:
    for slot in list(slots):
        slot.destroy()


def shm_request(
    slot: ShmSlot, call: InferCall, info: ModelInfo
) -> tuple[InferCall, tuple[int, int]]:
    """Write ``call.array`` into ``slot``; the same request by reference, and the output shape.

    The input goes at offset 0 and the probabilities come back after it, so
    one registered region serves one whole request.
    """
    if call.array is None:
        raise InferenceError("a shared-memory request needs its input array")
    count = call.array.shape[0] if info.max_batch_size > 0 else 1
    out_shape = (count, info.num_classes)
    output = OutputSpec(
        info.output_name,
        shm_region=slot.name,
        shm_byte_size=count * info.num_classes * 4,
        shm_offset=slot.output_offset,
    )
    request = replace(
        call,
        array=None,
        shape=tuple(call.array.shape),
        shm_region=slot.name,
        shm_byte_size=slot.write_input(call.array),
        outputs=(output,),
    )
    return request, out_shape


def pool_for(info: ModelInfo) -> ShmPool:
    """A pool whose slots hold one full batch of ``info``'s input and output."""
    batch = max(1, info.max_batch_size)
    height, width, channels = info.input_shape
    return ShmPool(
        input_bytes=batch * height * width * channels, output_bytes=batch * info.num_classes * 4
    )
