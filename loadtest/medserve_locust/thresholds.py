"""Pass/fail thresholds of a load test, turned into locust's process exit code.

Usage::

    from locust import events
    from medserve_locust import thresholds

    thresholds.install(events)   # reads --max-failure-ratio and --max-p95-ms

    locust -f scenarios/classify_grpc.py --headless ... --max-failure-ratio 0.01 --max-p95-ms 500
    echo $?   # 1 when a threshold was crossed

As in locust's own example, the check runs when locust quits, on the master
(or the single local process), over the whole run's aggregated statistics.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)
_INSTALLED: list[bool] = []


@dataclass(frozen=True, kw_only=True)
class Thresholds:
    """Limits a run must stay within.

    Attributes:
        max_failure_ratio: Highest allowed share of failed requests (0: none).
        max_p95_ms: Highest allowed 95th percentile latency; 0 disables it.
    """

    max_failure_ratio: float = 0.0
    max_p95_ms: float = 0.0

    def violations(self, *, requests: int, fail_ratio: float, p95_ms: float) -> list[str]:
        """Return a sentence for each crossed threshold (empty: the run passed)."""
        found = []
        if requests == 0:
            found.append("no request was made")
        if fail_ratio > self.max_failure_ratio:
            found.append(f"failure ratio {fail_ratio:.2%} is above {self.max_failure_ratio:.2%}")
        if self.max_p95_ms > 0 and p95_ms > self.max_p95_ms:
            found.append(f"p95 latency {p95_ms:.0f} ms is above {self.max_p95_ms:.0f} ms")
        return found


def install(events: Any) -> None:
    """Set ``environment.process_exit_code`` from the thresholds when locust quits."""
    if _INSTALLED:
        return
    _INSTALLED.append(True)

    def on_quitting(environment: Any, **_: Any) -> None:
        from locust.runners import WorkerRunner

        if isinstance(environment.runner, WorkerRunner):
            return  # Workers hold a share of the stats; the master judges the whole.
        options = environment.parsed_options
        thresholds = Thresholds(
            max_failure_ratio=float(getattr(options, "max_failure_ratio", 0.0) or 0.0),
            max_p95_ms=float(getattr(options, "max_p95_ms", 0.0) or 0.0),
        )
        total = environment.stats.total
        found = thresholds.violations(
            requests=total.num_requests,
            fail_ratio=total.fail_ratio,
            p95_ms=total.get_response_time_percentile(0.95) or 0.0,
        )
        for sentence in found:
            log.error("threshold crossed: %s", sentence)
        environment.process_exit_code = 1 if found else 0

    events.quitting.add_listener(on_quitting)
