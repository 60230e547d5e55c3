"""Closed-loop load at a fixed concurrency: N callers, each with one request in flight.

Usage::

    result = run_closed_loop(target.make_call, concurrency=16, duration_s=20, warmup_s=3)
    result.inferences_per_s, result.latencies_ms   # raw samples of the window

Every variant of the benchmark (medserve through the client, raw payload
variants, the naive peer) is driven by this same loop, so they differ only in
what one call does. Each caller is a thread with its own connection; a call
returns the number of images it had classified and raises on any failure,
including a wrong answer. Only requests that *complete* inside the
measurement window (after the warm-up) count, so throughput is completions per
second of a steady state, and their latencies are the raw samples.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

Call = Callable[[], int]


@dataclass
class CellResult:
    """What one closed-loop run measured.

    Attributes:
        concurrency: Callers (requests in flight).
        window_s: Length of the measurement window.
        latencies_ms: Latency of every successful request completed in it.
        inferences: Images classified by those requests.
        failures: Requests that failed in the window.
        first_error: The first failure's message, for the report.
    """

    concurrency: int
    window_s: float
    latencies_ms: np.ndarray
    inferences: int
    failures: int
    first_error: str | None = None

    @property
    def requests(self) -> int:
        """Successful requests in the window."""
        return int(self.latencies_ms.size)

    @property
    def inferences_per_s(self) -> float:
        """Images per second over the window."""
        return self.inferences / self.window_s if self.window_s > 0 else 0.0


@dataclass
class _Tally:
    latencies_ms: list[float] = field(default_factory=list)
    inferences: int = 0
    failures: int = 0
    first_error: str | None = None


def run_closed_loop(
    make_call: Callable[[int], Call],
    *,
    concurrency: int,
    duration_s: float,
    warmup_s: float = 2.0,
    on_window: Callable[[str], None] | None = None,
) -> CellResult:
    """Drive ``concurrency`` callers for ``warmup_s + duration_s`` seconds.

    Args:
        make_call: Builds caller ``i``'s request function (its own connection);
            called for every caller before the clock starts.
        concurrency: Callers, each with one request in flight.
        duration_s: Measured seconds.
        warmup_s: Unmeasured seconds first (connections, the batcher settling).
        on_window: Called with ``"start"`` and ``"end"`` from this thread when
            the measurement window opens and closes (e.g. to snapshot Triton's
            statistics over exactly the window).
    """
    if concurrency < 1 or duration_s <= 0:
        raise ValueError("concurrency and duration must be positive")
    calls = [make_call(i) for i in range(concurrency)]
    tallies = [_Tally() for _ in calls]
    start_gate = threading.Barrier(concurrency + 1)
    window: list[float] = []

    def caller(call: Call, tally: _Tally) -> None:
        start_gate.wait()
        begin, end = window
        while True:
            started = time.perf_counter()
            if started >= end:
                return
            try:
                images = call()
                error = None
            except Exception as exc:  # Any failure, transport or answer, is counted.
                images, error = 0, f"{type(exc).__name__}: {str(exc)[:300]}"
            finished = time.perf_counter()
            if not begin <= finished <= end:
                continue  # Warm-up, or completed after the window closed.
            if error is None:
                tally.latencies_ms.append((finished - started) * 1000.0)
                tally.inferences += images
            else:
                tally.failures += 1
                tally.first_error = tally.first_error or error

    threads = [
        threading.Thread(target=caller, args=(c, t), name=f"caller-{i}", daemon=True)
        for i, (c, t) in enumerate(zip(calls, tallies, strict=True))
    ]
    for thread in threads:
        thread.start()
    now = time.perf_counter()
    window.extend([now + warmup_s, now + warmup_s + duration_s])
    start_gate.wait()
    if on_window is not None:
        for edge, at in zip(("start", "end"), window, strict=True):
            time.sleep(max(0.0, at - time.perf_counter()))
            on_window(edge)
    for thread in threads:
        thread.join()
    errors = [t.first_error for t in tallies if t.first_error]
    return CellResult(
        concurrency=concurrency,
        window_s=duration_s,
        latencies_ms=np.asarray([x for t in tallies for x in t.latencies_ms], dtype=np.float64),
        inferences=sum(t.inferences for t in tallies),
        failures=sum(t.failures for t in tallies),
        first_error=errors[0] if errors else None,
    )
