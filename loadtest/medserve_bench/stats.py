"""Triton's server-side view of a measurement window, from its statistics API.

Usage::

    client = tritonclient.grpc.InferenceServerClient("127.0.0.1:8001")
    before = snapshot(client)
    ...                                  # the load runs
    window = diff(before, snapshot(client))
    window["medcnn"].inferences_per_execution, window["medcnn"].mean_queue_ms

Triton's counters are cumulative since the model loaded (warm-up and earlier
runs included), so a window is the difference of two snapshots. The JSON is
the same over HTTP and gRPC (``as_json=True``), except that gRPC writes int64
counters as strings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

_STAGES = ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output")


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
