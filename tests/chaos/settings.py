"""How hard each fault pushes: a short form for ``make test``, a full one for ``make chaos``.

Usage::

    scale = SHORT if quick else FULL
    LoadRun(call, workers=scale.workers, max_calls=scale.kill_calls, ...)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True, kw_only=True)
class Scale:
    """Sizes of the loads; every load is also bounded in time by ``max_duration_s``.

    Attributes:
        name: ``short`` or ``full``, printed with the table.
        workers: Threads of steady SDK load (kill, soak).
        flow_calls: Successful calls that show the load flows (before a fault,
            and again after a restart).
        kill_calls: Most calls of the kill-and-restart load.
        storm_workers: Concurrent callers of the overload.
        storm_queue: The batcher's queue during the overload (8x fewer than the callers).
        held_requests: Requests in flight when SIGTERM arrives.
        bombs_per_model: Bombs sent at once to each model that decodes bytes.
        soak_warmup_calls: Calls before the soak's first memory reading.
        soak_calls: Calls of the soak itself.
        max_duration_s: Longest any one load may run.
    """

    name: str
    workers: int
    flow_calls: int
    kill_calls: int
    storm_workers: int
    storm_queue: int
    held_requests: int
    bombs_per_model: int
    soak_warmup_calls: int
    soak_calls: int
    max_duration_s: float


SHORT = Scale(
    name="short",
    workers=8,
    flow_calls=20,
    kill_calls=3000,
    storm_workers=48,
    storm_queue=6,
    held_requests=6,
    bombs_per_model=2,
    soak_warmup_calls=60,
    soak_calls=500,
    max_duration_s=180.0,
)
FULL = Scale(
    name="full",
    workers=12,
    flow_calls=100,
    kill_calls=20_000,
    storm_workers=128,
    storm_queue=16,
    held_requests=8,
    bombs_per_model=4,
    soak_warmup_calls=300,
    soak_calls=15_000,
    max_duration_s=600.0,
)


def sample_images(size: tuple[int, int], count: int, seed: int = 0) -> list[npt.NDArray[np.uint8]]:
    """``count`` random uint8 RGB images of ``size`` (height, width)."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(count)]
