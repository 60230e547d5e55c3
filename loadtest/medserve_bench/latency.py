"""Exact latency percentiles and throughput from raw per-request samples.

Usage::

    latency = latency_summary(latencies_ms)          # {"p50_ms": ..., "p99_ms": ...}
    rate = throughput(samples)                        # inferences/s counting batch size

Percentiles are computed over every sample (numpy's linear interpolation
between the two nearest ranks), not over locust's response-time buckets,
which round to two significant digits above 100 ms.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from medserve_locust.samples import Samples

PERCENTILES = (50, 90, 95, 99)


def latency_summary(
    latencies_ms: Sequence[float] | np.ndarray, percentiles: Sequence[int] = PERCENTILES
) -> dict[str, Any]:
    """Count, mean, max and percentiles (``p50_ms`` ...) of raw latencies.

    Values are ``None`` when there is no sample, never a made-up zero.
    """
    values = np.asarray(latencies_ms, dtype=np.float64)
    summary: dict[str, Any] = {"count": int(values.size)}
    if values.size == 0:
        summary.update({"mean_ms": None, "max_ms": None})
        summary.update({f"p{p}_ms": None for p in percentiles})
        return summary
    summary["mean_ms"] = round(float(values.mean()), 3)
    summary["max_ms"] = round(float(values.max()), 3)
    for p, value in zip(percentiles, np.percentile(values, percentiles), strict=True):
        summary[f"p{p}_ms"] = round(float(value), 3)
    return summary


def throughput(samples: Samples) -> dict[str, Any]:
    """Successful requests and inferences per second over the samples' span.

    The window runs from the first request's start to the last request's end,
    so locust's start-up and shut-down are not counted as idle time.
    """
    if len(samples) == 0:
        return {
            "window_s": 0.0,
            "requests": 0,
            "failures": 0,
            "inferences": 0,
            "requests_per_s": None,
            "inferences_per_s": None,
        }
    first = float(samples.start_s.min())
    last = float(np.max(samples.start_s + samples.latency_ms / 1000.0))
    window_s = max(last - first, 1e-9)
    ok = samples.ok
    inferences = int(samples.batch_size[ok].sum())
    return {
        "window_s": round(window_s, 3),
        "requests": int(ok.sum()),
        "failures": int((~ok).sum()),
        "inferences": inferences,
        "requests_per_s": round(int(ok.sum()) / window_s, 3),
        "inferences_per_s": round(inferences / window_s, 3),
    }
