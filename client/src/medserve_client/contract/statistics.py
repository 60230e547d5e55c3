"""Windows over Triton's statistics API: what the server did between two readings.

Usage::

    window = StatsWindow.open(stats_client, "medcnn")     # first reading
    ...                                                   # send 16 requests, get 16 answers
    counted = window.close(requests=16)                   # waits until Triton counted them
    counted.inferences_per_execution, counted.mean_queue_ms

    before = snapshot(stats_client)                       # every model
    ...                                                   # a load test runs
    windows = diff(before, snapshot(stats_client))        # per model that did work

Triton's counters are cumulative since the model loaded (warm-up and earlier
runs included), so a window is the difference of two snapshots. Triton
updates them after it has sent the responses, so a reading taken right after
the last answer can miss the last execution: :meth:`StatsWindow.close` polls
until the expected requests are counted, or until two readings agree. The
JSON is the same over HTTP and gRPC (``as_json=True``), except that gRPC
writes int64 counters as strings.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

T = TypeVar("T")

_STAGES = ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output")
SETTLE_POLL_S = 0.05


@dataclass(frozen=True)
class ModelCounters:
    """Cumulative counters of one model (all versions summed).

    Attributes:
        inference_count: Images inferred (a batch of 8 counts 8).
        execution_count: Model executions (one per batch the scheduler formed).
        counts: Requests counted per stage (``success``, ``queue``, ...).
        ns: Cumulative nanoseconds per stage, summed over requests.
    """

    inference_count: int
    execution_count: int
    counts: dict[str, int]
    ns: dict[str, int]


def parse_statistics(document: Mapping[str, Any]) -> dict[str, ModelCounters]:
    """Turn a statistics response (JSON form) into counters keyed by model name."""
    out: dict[str, ModelCounters] = {}
    for entry in document.get("model_stats", []):
        stats = entry.get("inference_stats", {})
        counts = {s: int(stats.get(s, {}).get("count", 0)) for s in _STAGES}
        ns = {s: int(stats.get(s, {}).get("ns", 0)) for s in _STAGES}
        current = ModelCounters(
            int(entry.get("inference_count", 0)), int(entry.get("execution_count", 0)), counts, ns
        )
        name = str(entry["name"])
        if name in out:  # Another version of the same model: add it up.
            prev = out[name]
            current = ModelCounters(
                prev.inference_count + current.inference_count,
                prev.execution_count + current.execution_count,
                {s: prev.counts[s] + counts[s] for s in _STAGES},
                {s: prev.ns[s] + ns[s] for s in _STAGES},
            )
        out[name] = current
    return out


def snapshot(client: Any, model: str = "") -> dict[str, ModelCounters]:
    """Read the counters of ``model`` (every loaded model when empty).

    Args:
        client: A ``tritonclient.grpc`` or ``tritonclient.http`` client.
        model: Model name, or ``""`` for all.
    """
    try:
        document = client.get_inference_statistics(model_name=model, as_json=True)
    except TypeError:  # tritonclient.http returns JSON already and has no as_json.
        document = client.get_inference_statistics(model_name=model)
    return parse_statistics(document)


@dataclass(frozen=True)
class ServerWindow:
    """What one model did between two snapshots.

    Attributes:
        requests: Successful requests.
        failed_requests: Failed requests.
        inferences: Images inferred.
        executions: Batches executed.
        inferences_per_execution: Mean batch size the dynamic batcher formed.
        mean_queue_ms: Mean time a request waited in Triton's scheduler queue.
        mean_compute_ms: Mean time of a request's execution (input copy,
            inference, output copy), shared by all requests of its batch.
        mean_request_ms: Mean time from arrival to response inside Triton.
    """

    requests: int
    failed_requests: int
    inferences: int
    executions: int
    inferences_per_execution: float | None
    mean_queue_ms: float | None
    mean_compute_ms: float | None
    mean_request_ms: float | None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary (times rounded to microseconds)."""
        return {
            key: round(value, 3) if isinstance(value, float) else value
            for key, value in asdict(self).items()
        }


def _mean_ms(ns: int, count: int) -> float | None:
    return ns / count / 1e6 if count > 0 else None


def window(before: ModelCounters | None, after: ModelCounters) -> ServerWindow:
    """Difference of two snapshots of one model (``before=None``: since load)."""
    zero = ModelCounters(0, 0, dict.fromkeys(_STAGES, 0), dict.fromkeys(_STAGES, 0))
    before = before or zero
    if after.inference_count < before.inference_count:
        raise ValueError("counters went backwards: the model was reloaded during the window")
    counts = {s: after.counts[s] - before.counts[s] for s in _STAGES}
    ns = {s: after.ns[s] - before.ns[s] for s in _STAGES}
    inferences = after.inference_count - before.inference_count
    executions = after.execution_count - before.execution_count
    compute_ns = ns["compute_input"] + ns["compute_infer"] + ns["compute_output"]
    return ServerWindow(
        requests=counts["success"],
        failed_requests=counts["fail"],
        inferences=inferences,
        executions=executions,
        inferences_per_execution=inferences / executions if executions else None,
        mean_queue_ms=_mean_ms(ns["queue"], counts["queue"]),
        mean_compute_ms=_mean_ms(compute_ns, counts["compute_infer"]),
        mean_request_ms=_mean_ms(ns["success"], counts["success"]),
    )


def diff(
    before: Mapping[str, ModelCounters], after: Mapping[str, ModelCounters]
) -> dict[str, ServerWindow]:
    """Windows of every model in ``after`` that did any work since ``before``."""
    out = {}
    for name, counters in after.items():
        result = window(before.get(name), counters)
        if result.requests or result.failed_requests or result.inferences:
            out[name] = result
    return out


def _poll(read: Callable[[], T], done: Callable[[T, T | None], bool], timeout_s: float) -> T:
    """Read until ``done(now, previous)`` or ``timeout_s`` passed; return the last reading."""
    deadline = time.monotonic() + timeout_s
    previous: T | None = None
    while True:
        now = read()
        if done(now, previous) or time.monotonic() >= deadline:
            return now
        previous = now
        time.sleep(SETTLE_POLL_S)


def settled_snapshot(
    client: Any, model: str = "", *, timeout_s: float = 30.0
) -> dict[str, ModelCounters]:
    """A :func:`snapshot` taken once two readings ``SETTLE_POLL_S`` apart agree.

    For the end of a window whose requests have all been answered: Triton
    may still be counting the last of them.
    """
    return _poll(lambda: snapshot(client, model), lambda now, prev: now == prev, timeout_s)


class StatsWindow:
    """The statistics of one model over a block of requests, read once Triton settled."""

    def __init__(self, client: Any, model: str, before: ModelCounters | None) -> None:
        """Use :meth:`open`."""
        self._client = client
        self._model = model
        self._before = before

    @classmethod
    def open(cls, client: Any, model: str) -> StatsWindow:
        """Take the first reading of ``model`` through a tritonclient ``client``."""
        return cls(client, model, snapshot(client, model).get(model))

    def _now(self) -> ServerWindow:
        after = snapshot(self._client, self._model).get(self._model)
        if after is None:
            raise ValueError(f"Triton reports no statistics for model {self._model!r}")
        return window(self._before, after)

    def close(self, *, requests: int | None = None, timeout_s: float = 30.0) -> ServerWindow:
        """The window since :meth:`open`, once Triton's counts have settled.

        Args:
            requests: Requests sent in the window, answered or failed: wait
                until Triton counted that many (and at least one execution
                when any succeeded). ``None``: wait until two readings
                ``SETTLE_POLL_S`` apart agree.
            timeout_s: Give up waiting and return the last reading (the
                caller's assertions then say what is missing).
        """

        def counted(now: ServerWindow, previous: ServerWindow | None) -> bool:
            if requests is None:
                return now == previous
            answered = now.requests + now.failed_requests >= requests
            return answered and (now.executions > 0 or now.requests == 0)

        return _poll(self._now, counted, timeout_s)
