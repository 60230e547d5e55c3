"""The SDK as an application uses it, with default settings, over every protocol.

Usage::

    with closing(Callers(server.grpc_url, server.http_url, model="medcnn", images=images)) as c:
        c.check(worker)   # one classify through worker's protocol, answer checked

Worker ``n`` calls through a blocking gRPC client (``n % 4 == 0``), a blocking
HTTP client (1), or an asyncio gRPC (2) or HTTP (3) client on its own event loop. Every
answer is compared with the one the server gave before the fault: a wrong
answer raises :class:`WrongAnswerError`, which the load counts as untyped.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import numpy as np
import numpy.typing as npt

from medserve_client import AsyncClient, Client

PROTOCOLS = ("grpc", "http", "async-grpc", "async-http")
_ATOL = 1e-5


class WrongAnswerError(AssertionError):
    """The server answered, but not what it answered before the fault."""


class Callers:
    """Default-settings clients for each protocol, shared by the load's workers."""

    def __init__(
        self, grpc_url: str, http_url: str, *, model: str, images: list[npt.NDArray[np.uint8]]
    ) -> None:
        """Open the blocking clients and record the expected answer of every image."""
        self._urls = {"async-grpc": grpc_url, "async-http": http_url}
        self.model = model
        self.images = images
        self._blocking = [Client(grpc_url, model=model), Client(http_url, model=model)]
        self.expected = [p.probabilities for p in self._blocking[0].classify(images)]
        self._local = threading.local()
        self._lock = threading.Lock()
        self._loops: list[tuple[asyncio.AbstractEventLoop, AsyncClient]] = []
        self._counter = 0

    def _next_image(self) -> int:
        with self._lock:
            self._counter += 1
            return self._counter % len(self.images)

    def classify(self, worker: int, index: int) -> Any:
        """Classify image ``index`` through worker ``worker``'s protocol."""
        protocol = PROTOCOLS[worker % len(PROTOCOLS)]
        image = self.images[index]
        if not protocol.startswith("async"):
            return self._blocking[PROTOCOLS.index(protocol)].classify(image)[0]
        loop, client = self._async_client(protocol)
        return loop.run_until_complete(client.classify(image))[0]

    def check(self, worker: int) -> None:
        """One call whose answer must equal the answer before the fault."""
        index = self._next_image()
        prediction = self.classify(worker, index)
        if not np.allclose(prediction.probabilities, self.expected[index], atol=_ATOL):
            raise WrongAnswerError(f"image {index}: {prediction.probabilities}")

    def _async_client(self, protocol: str) -> tuple[asyncio.AbstractEventLoop, AsyncClient]:
        pair = getattr(self._local, "pair", None)
        if pair is None:
            # One loop per thread: an AsyncClient belongs to one event loop.
            client = AsyncClient(self._urls[protocol], model=self.model)
            pair = (asyncio.new_event_loop(), client)
            self._local.pair = pair
            with self._lock:
                self._loops.append(pair)
        return pair

    def close(self) -> None:
        """Close every client and event loop."""
        for blocking in self._blocking:
            blocking.close()
        with self._lock:
            loops, self._loops = self._loops, []
        for loop, client in loops:
            if loop.is_running():  # Its worker hangs in a call: nothing to close safely.
                continue
            loop.run_until_complete(client.close())
            loop.close()
