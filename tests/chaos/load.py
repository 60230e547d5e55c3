"""Bounded load: worker threads that call the SDK and tally how every call ended.

Usage::

    with LoadRun(lambda worker: client.classify(image), workers=8, max_calls=2000,
                 max_duration_s=120.0, hang_after_s=40.0) as load:
        load.wait_for_ok(50)          # the load is flowing
        ...                           # inject the fault
        load.wait_for_ok(load.tally().ok + 50)
    tally = load.result               # calls made, ok, typed failures, untyped, hangs

A call ends in one of three ways: it returns (ok), it raises a
:class:`~medserve_client.exceptions.MedServeError` (a typed failure, counted by
class), or it raises anything else (untyped: a bug of the SDK). A call still
running ``hang_after_s`` after the load was told to stop is a hang. The load
is bounded twice, by a number of calls and by a time, so a fault that breaks
the server cannot make it run forever; synchronisation is by condition
variables, never by sleeping.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any

from medserve_client import MedServeError, Timeout

if TYPE_CHECKING:
    from chaos.settings import Scale

#: The SDK's default deadline: a call may legitimately take that long.
DEADLINE_S = Timeout().request_s
#: A call still running this long after the load was told to stop is stuck.
HANG_AFTER_S = DEADLINE_S + 15.0


@dataclass
class CallTally:
    """How the calls of a load ended."""

    made: int = 0
    ok: int = 0
    typed: Counter[str] = field(default_factory=Counter)
    untyped: Counter[str] = field(default_factory=Counter)
    hung: int = 0
    ok_latencies_s: list[float] = field(default_factory=list)
    failed_latencies_s: list[float] = field(default_factory=list)
    examples: dict[str, str] = field(default_factory=dict)

    @property
    def lost(self) -> int:
        """Calls that did not return an answer: failed (typed or not) or hung."""
        return sum(self.typed.values()) + sum(self.untyped.values()) + self.hung

    def failures(self) -> str:
        """``"ServerOverloadedError x56"`` style summary, ``"-"`` when none."""
        kinds = [f"{name} x{count}" for name, count in sorted(self.typed.items())]
        kinds += [f"untyped {name} x{count}" for name, count in sorted(self.untyped.items())]
        return ", ".join(kinds) or "-"


class LoadRun:
    """Threads calling ``call(worker_index)`` until stopped, out of calls or out of time."""

    def __init__(
        self,
        call: Callable[[int], Any],
        *,
        workers: int,
        max_calls: int,
        max_duration_s: float,
        hang_after_s: float,
    ) -> None:
        """Describe the load; nothing runs until :meth:`start` (or ``with``).

        Args:
            call: One call; receives the worker's index.
            workers: Threads, each with one call in flight at a time.
            max_calls: Calls started in all, at most.
            max_duration_s: No call starts after this long.
            hang_after_s: A call still running this long after :meth:`stop`
                is counted as a hang (and its thread abandoned).
        """
        self._call = call
        self._workers = workers
        self._max_calls = max_calls
        self._max_duration_s = max_duration_s
        self._hang_after_s = hang_after_s
        self._tally = CallTally()
        self._changed = threading.Condition()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._end = 0.0
        self.result: CallTally | None = None

    def __enter__(self) -> LoadRun:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start the workers."""
        self._end = time.monotonic() + self._max_duration_s
        for index in range(self._workers):
            # Daemon: a hung call must not keep the process alive after the report.
            thread = threading.Thread(
                target=self._work, args=(index,), name=f"chaos-load-{index}", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def _next_call(self) -> bool:
        with self._changed:
            if self._stopping.is_set() or self._tally.made >= self._max_calls:
                return False
            if time.monotonic() >= self._end:
                return False
            self._tally.made += 1
            return True

    def _work(self, index: int) -> None:
        while self._next_call():
            started = time.monotonic()
            outcome: BaseException | None = None
            try:
                self._call(index)
            except BaseException as exc:
                outcome = exc
            elapsed = time.monotonic() - started
            with self._changed:
                if outcome is None:
                    self._tally.ok += 1
                    self._tally.ok_latencies_s.append(elapsed)
                else:
                    kind = (
                        self._tally.typed
                        if isinstance(outcome, MedServeError)
                        else self._tally.untyped
                    )
                    kind[type(outcome).__name__] += 1
                    # The first message of each class, for the JSON report.
                    self._tally.examples.setdefault(type(outcome).__name__, str(outcome)[:300])
                    self._tally.failed_latencies_s.append(elapsed)
                self._changed.notify_all()

    def tally(self) -> CallTally:
        """A snapshot of the tally so far."""
        with self._changed:
            return CallTally(
                made=self._tally.made,
                ok=self._tally.ok,
                typed=Counter(self._tally.typed),
                untyped=Counter(self._tally.untyped),
            )

    def wait_for_ok(self, count: int, timeout_s: float = 120.0) -> bool:
        """Block until ``count`` calls have succeeded; False if the time or the calls ran out."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while self._tally.ok < count:
                if self._all_done_locked():
                    return False
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(min(remaining, 1.0))
            return True

    def _all_done_locked(self) -> bool:
        """No call will start any more, and none is in flight."""
        tally = self._tally
        finished = tally.ok + sum(tally.typed.values()) + sum(tally.untyped.values())
        no_more = tally.made >= self._max_calls or time.monotonic() >= self._end
        return no_more and finished >= tally.made

    def stop(self) -> CallTally:
        """Stop starting calls, wait for those in flight, and return the final tally."""
        if self.result is not None:
            return self.result
        self._stopping.set()
        give_up = time.monotonic() + self._hang_after_s
        for thread in self._threads:
            thread.join(max(0.0, give_up - time.monotonic()))
        with self._changed:
            self._tally.hung = sum(thread.is_alive() for thread in self._threads)
            self.result = self._tally
        return self.result


def steady_load(call: Callable[[int], Any], scale: Scale, max_calls: int) -> LoadRun:
    """The steady load of the kill and soak faults: ``scale.workers`` threads, ``max_calls``."""
    return LoadRun(
        call,
        workers=scale.workers,
        max_calls=max_calls,
        max_duration_s=scale.max_duration_s,
        hang_after_s=HANG_AFTER_S,
    )
