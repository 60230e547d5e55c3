"""How many threads one model instance gives its runtime.

Usage::

    intra, inter = choose_thread_pools(model_config, available_cpus())

Every instance is its own stub process sharing the CPUs the server may use
(its CPU affinity, capped by a cgroup CPU quota, e.g. a Kubernetes CPU limit).
Each instance gets ``max(1, cpus // instances)`` intra-op threads (the threads
one convolution or matmul is split over) so instances do not oversubscribe the
cores, and 1 inter-op thread because the CNN is a chain of ops with no
independent branches to run side by side; more inter-op threads would only
compete for the same cores. Config ``parameters`` ``intra_op_threads`` /
``inter_op_threads`` (string values, e.g. ``"2"``) override either per model.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

INTRA_OP_PARAMETER = "intra_op_threads"
INTER_OP_PARAMETER = "inter_op_threads"


def available_cpus() -> int:
    """CPUs this process may use: its affinity, capped by a cgroup v2 CPU quota."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass  # No cgroup v2 quota visible: the affinity is the limit.
    return max(1, cpus)


def instance_count(model_config: dict[str, Any]) -> int:
    """Total instances (stub processes) of this model across its instance groups."""
    groups = model_config.get("instance_group") or [{}]
    return max(1, sum(int(group.get("count", 1) or 1) for group in groups))


def int_parameter(model_config: dict[str, Any], key: str) -> int | None:
    """The positive integer config parameter ``key``, or ``None`` when it is unset.

    Raises:
        ValueError: The parameter is set but is not an integer of at least 1.
    """
    raw = (model_config.get("parameters") or {}).get(key, {}).get("string_value")
    if raw in (None, ""):
        return None
    try:
        value = int(raw)
    except ValueError as exc:
        raise ValueError(f"config parameter {key!r} must be an integer, got {raw!r}") from exc
    if value < 1:
        raise ValueError(f"config parameter {key!r} must be at least 1, got {value}")
    return value


def choose_thread_pools(model_config: dict[str, Any], cpus: int) -> tuple[int, int]:
    """Pick ``(intra_op, inter_op)`` thread counts for one instance.

    Args:
        model_config: The model config as Triton passes it (parsed JSON).
        cpus: CPUs the server process may use.

    Returns:
        Config ``parameters`` win; otherwise the CPUs are split evenly over the
        instances for intra-op work and one inter-op thread runs the op chain.
    """
    intra = int_parameter(model_config, INTRA_OP_PARAMETER)
    inter = int_parameter(model_config, INTER_OP_PARAMETER)
    if intra is None:
        intra = max(1, cpus // instance_count(model_config))
    if inter is None:
        inter = 1
    return intra, inter
