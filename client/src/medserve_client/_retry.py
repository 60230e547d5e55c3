"""Deadlines and retries: exponential backoff with full jitter, bounded by the deadline.

Usage::

    deadline = Deadline(timeout_s=10.0)
    reply = call_with_retry(lambda remaining_s: transport.infer(call(remaining_s)),
                            retry=Retry(), deadline=deadline, what="infer")

Only :data:`~medserve_client.exceptions.RETRYABLE_ERRORS` (unavailability and
overload) are retried; an invalid input or a missing model fails at once. By
default (``Retry()``) the deadline alone ends the retries; ``Retry(attempts=n)``
also stops after ``n`` attempts. No wait ever runs past the deadline: when the
next backoff would, the last error (typed, retryable) is raised instead.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from medserve_client._errors import RETRYABLE_ERRORS, InferenceTimeoutError, MedServeError
from medserve_client._models import Retry

log = logging.getLogger("medserve_client")

T = TypeVar("T")


class Deadline:
    """A point in (monotonic) time by which a public call must finish."""

    def __init__(self, timeout_s: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        """Start counting ``timeout_s`` seconds from now."""
        self.timeout_s = timeout_s
        self._clock = clock
        self._end = clock() + timeout_s

    def remaining_s(self) -> float:
        """Seconds left, never negative."""
        return max(0.0, self._end - self._clock())

    def check(self, what: str) -> float:
        """Seconds left; raises :class:`InferenceTimeoutError` when none are."""
        remaining = self.remaining_s()
        if remaining <= 0.0:
            raise InferenceTimeoutError(
                f"{what}: the deadline of {self.timeout_s:.2g} s passed; raise timeout_s"
            )
        return remaining


def call_with_retry(
    attempt: Callable[[float], T],
    *,
    retry: Retry,
    deadline: Deadline,
    what: str,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> T:
    """Call ``attempt(remaining_s)`` until it succeeds, retrying only retryable errors.

    Args:
        attempt: One try; receives the seconds left before the deadline.
        retry: How long to back off, and the count limit if any.
        deadline: The call's deadline, shared by every attempt and wait.
        what: Names the call in log lines.
        sleep: Injected by tests.
        rng: Injected by tests for reproducible jitter.
    """
    number = 0
    last: MedServeError | None = None
    while True:
        number += 1
        if last is not None and deadline.remaining_s() <= 0.0:
            # The backoff overshot the deadline (a busy machine): report the
            # cause (unavailable, overloaded), not a timeout.
            raise last
        remaining = deadline.check(what)
        try:
            return attempt(remaining)
        except RETRYABLE_ERRORS as exc:
            last = exc
            wait_s = _next_wait(retry, number, deadline, rng)
            if wait_s is None:
                raise
            log.info("%s failed (%s), retry %d in %.3f s", what, type(exc).__name__, number, wait_s)
            sleep(wait_s)


async def call_with_retry_async(
    attempt: Callable[[float], Awaitable[T]],
    *,
    retry: Retry,
    deadline: Deadline,
    what: str,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    rng: random.Random | None = None,
) -> T:
    """The asyncio twin of :func:`call_with_retry` (waits with ``asyncio.sleep``)."""
    number = 0
    last: MedServeError | None = None
    while True:
        number += 1
        if last is not None and deadline.remaining_s() <= 0.0:
            # The backoff overshot the deadline (a busy machine): report the
            # cause (unavailable, overloaded), not a timeout.
            raise last
        remaining = deadline.check(what)
        try:
            return await attempt(remaining)
        except RETRYABLE_ERRORS as exc:
            last = exc
            wait_s = _next_wait(retry, number, deadline, rng)
            if wait_s is None:
                raise
            log.info("%s failed (%s), retry %d in %.3f s", what, type(exc).__name__, number, wait_s)
            await sleep(wait_s)


def _next_wait(
    retry: Retry, failed_attempt: int, deadline: Deadline, rng: random.Random | None
) -> float | None:
    """Backoff before the next attempt, or None when there must be no next attempt."""
    if not retry.allows_another(failed_attempt):
        return None
    wait_s = retry.backoff(failed_attempt, rng)
    if wait_s >= deadline.remaining_s():
        return None
    return wait_s
