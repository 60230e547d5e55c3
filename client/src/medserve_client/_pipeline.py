"""Bounded, order-preserving concurrency for ``classify_many`` (threads and asyncio).

Usage::

    for result in ordered_map(classify_one, inputs, concurrency=16):
        ...  # results in input order; at most 16 inputs taken and in flight

    async for result in ordered_map_async(classify_one_async, inputs, concurrency=16):
        ...

The window is the backpressure: a new input is taken from the iterable only
when the oldest result has been handed out, so a slow server slows the reader
instead of piling up work in memory.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from medserve_client._errors import InvalidInputError

T = TypeVar("T")
R = TypeVar("R")


def check_concurrency(concurrency: int) -> None:
    """Refuse a concurrency that is not a positive integer."""
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise InvalidInputError(f"concurrency must be an integer >= 1, got {concurrency!r}")


def ordered_map(fn: Callable[[T, int], R], items: Iterable[T], *, concurrency: int) -> Iterator[R]:
    """``fn(item, index)`` on ``concurrency`` threads, yielded in input order.

    Closing the iterator early cancels what has not started and waits for
    what has.
    """
    check_concurrency(concurrency)
    pending: deque[Future[R]] = deque()
    with ThreadPoolExecutor(concurrency, thread_name_prefix="medserve-many") as pool:
        try:
            for index, item in enumerate(items):
                if len(pending) >= concurrency:
                    yield pending.popleft().result()
                pending.append(pool.submit(fn, item, index))
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


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
