"""Bounded, order-preserving concurrency for ``classify_many`` (threads and asyncio).

Usage::

    for result in ordered_map(classify_one, inputs, concurrency=16):
        ...  # results in input order; 16 in flight, at most 32 inputs read ahead

    async for result in ordered_map_async(classify_one_async, inputs, concurrency=16):
        ...  # results in input order; at most 16 inputs taken and in flight

The window is the backpressure: inputs are taken from the iterable only while
fewer than a bound (``2 * concurrency`` for threads, ``concurrency`` for
asyncio) wait to be handed out, so a slow server or a slow consumer slows the
reader instead of piling up work in memory. The thread version lets each
thread take its next input itself: a hand-off through the consumer's thread
after every request left requests unsent under load (profiled with
``medserve_bench.sdk_speed``); asyncio has no such hand-off to save.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterable,
    Iterator,
)
from typing import Any, TypeVar

from medserve_client._errors import InvalidInputError

T = TypeVar("T")
R = TypeVar("R")


def check_concurrency(concurrency: int) -> None:
    """Refuse a concurrency that is not a positive integer."""
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise InvalidInputError(f"concurrency must be an integer >= 1, got {concurrency!r}")


def ordered_map(
    fn: Callable[[T, int], R], items: Iterable[T], *, concurrency: int
) -> Generator[R, None, None]:
    """``fn(item, index)`` on ``concurrency`` threads, yielded in input order.

    Each thread takes the next input itself as soon as its call returns, as
    a plain thread loop does: no hand-off through the consumer's thread
    between one request and the next (profiled: with 16 threads that hand-off
    left requests unsent). At most ``concurrency`` calls run at once, and at
    most ``2 * concurrency`` inputs are taken ahead of the results handed
    out, so a slow consumer or one slow call stops the reading. Closing the
    iterator early stops the reading and waits for the calls running.
    """
    check_concurrency(concurrency)
    window = _Window(fn, items, read_ahead=2 * concurrency)
    threads = [
        threading.Thread(target=window.work, name=f"medserve-many-{n}", daemon=True)
        for n in range(concurrency)
    ]
    for thread in threads:
        thread.start()
    try:
        yield from window.results()
    finally:
        window.stop()
        for thread in threads:
            thread.join()


class _Window:
    """The state ``ordered_map``'s threads share: inputs taken, results waiting for their turn."""

    def __init__(self, fn: Callable[[T, int], R], items: Iterable[T], *, read_ahead: int) -> None:
        self._fn: Callable[[Any, int], Any] = fn
        self._source = iter(items)
        self._read_ahead = read_ahead
        self._cond = threading.Condition()
        self._source_lock = threading.Lock()  # The source is read by one thread at a time.
        self._done: dict[int, tuple[bool, Any]] = {}  # index -> (ok, result or exception)
        self._reserved = 0  # Inputs taken or being taken.
        self._taken = 0  # Indices handed to threads; after the source ended, the total.
        self._handed = 0  # Results handed out.
        self._ended = False  # The source is exhausted (or raised).
        self._stopped = False

    def work(self) -> None:
        """One thread: take an input, call ``fn``, store the result; until the source ends."""
        while True:
            with self._cond:
                while not self._stopped and not self._ended and self._full():
                    self._cond.wait()
                if self._stopped or self._ended:
                    return
                self._reserved += 1
            with self._source_lock:
                try:
                    item = next(self._source)
                    index, taken = self._taken, True
                    self._taken += 1
                except StopIteration:
                    taken = False
                except BaseException as exc:  # The source's own error, at its position.
                    with self._cond:
                        self._done[self._taken] = (False, exc)
                        self._taken += 1
                        self._ended = True
                        self._cond.notify_all()
                    return
            if not taken:
                with self._cond:
                    self._ended = True
                    self._cond.notify_all()
                return
            try:
                outcome: tuple[bool, Any] = (True, self._fn(item, index))
            except BaseException as exc:  # Raised to the consumer at this input's turn.
                outcome = (False, exc)
            with self._cond:
                self._done[index] = outcome
                self._cond.notify_all()

    def _full(self) -> bool:
        return self._reserved - self._handed >= self._read_ahead

    def results(self) -> Iterator[Any]:
        """The results in input order, each as soon as it and those before it are done."""
        index = 0
        while True:
            with self._cond:
                while index not in self._done and not (self._ended and index >= self._taken):
                    self._cond.wait()
                if index not in self._done:
                    return
                ok, value = self._done.pop(index)
                self._handed += 1
                self._cond.notify_all()
            index += 1
            if not ok:
                raise value
            yield value

    def stop(self) -> None:
        """Take no more inputs (the threads finish the calls they are in)."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()


async def ordered_map_async(
    fn: Callable[[T, int], Awaitable[R]],
    items: Iterable[T] | AsyncIterable[T],
    *,
    concurrency: int,
) -> AsyncIterator[R]:
    """``await fn(item, index)`` with ``concurrency`` tasks in flight, yielded in input order."""
    check_concurrency(concurrency)
    pending: deque[asyncio.Future[R]] = deque()
    try:
        index = 0
        async for item in _aiter(items):
            if len(pending) >= concurrency:
                yield await pending.popleft()
            pending.append(asyncio.ensure_future(fn(item, index)))
            index += 1
        while pending:
            yield await pending.popleft()
    finally:
        for task in pending:
            task.cancel()


async def _aiter(items: Iterable[T] | AsyncIterable[T]) -> AsyncIterator[T]:
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item
