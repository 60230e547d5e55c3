"""Raw per-request samples, so percentiles are exact and not locust's rounded buckets.

Usage::

    from locust import events
    from medserve_locust import samples

    samples.install(events)   # in a locustfile; active when --samples-file is set

    rows = samples.read_samples(Path("results/samples.csv"))

Locust rounds response times into buckets for its percentiles (and merges
them across workers); the summary instead reads every request's latency from
this CSV. A worker of a distributed run writes ``<file>.<worker id>``.
Columns: ``start_s`` (wall clock), ``latency_ms``, ``batch_size``, ``ok`` (1/0).
"""

from __future__ import annotations

import csv
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

COLUMNS = ("start_s", "latency_ms", "batch_size", "ok")
_INSTALLED: list[bool] = []


@dataclass
class SampleRecorder:
    """Collects one row per request fired through locust's ``request`` event."""

    rows: list[tuple[float, float, int, int]] = field(default_factory=list)

    def on_request(
        self,
        request_type: str,
        name: str,
        response_time: float,
        response_length: int,
        exception: BaseException | None = None,
        context: dict[str, Any] | None = None,
        start_time: float | None = None,
        **_: Any,
    ) -> None:
        """Listener for ``events.request`` (locust's keyword arguments)."""
        batch = int((context or {}).get("batch_size", 1))
        started = start_time if start_time is not None else time.time() - response_time / 1000
        self.rows.append((float(started), float(response_time), batch, 0 if exception else 1))

    def write(self, path: Path) -> None:
        """Write all rows as CSV (header first)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(COLUMNS)
            writer.writerows(self.rows)
        log.info("wrote %d request samples to %s", len(self.rows), path)


def _samples_path(environment: Any) -> Path | None:
    name = getattr(environment.parsed_options, "samples_file", "") or ""
    if not name:
        return None
    from locust.runners import WorkerRunner

    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        return Path(f"{name}.{runner.client_id}")
    return Path(name)


def install(events: Any) -> None:
    """Record samples in this process and write them when locust quits."""
    if _INSTALLED:
        return
    _INSTALLED.append(True)
    recorder = SampleRecorder()

    def on_init(environment: Any, **_: Any) -> None:
        from locust.runners import MasterRunner

        # A master only sees aggregated stats; the samples live where requests run.
        if not isinstance(environment.runner, MasterRunner):
            events.request.add_listener(recorder.on_request)

    def on_quitting(environment: Any, **_: Any) -> None:
        from locust.runners import MasterRunner

        path = _samples_path(environment)
        if path is not None and not isinstance(environment.runner, MasterRunner):
            recorder.write(path)

    events.init.add_listener(on_init)
    events.quitting.add_listener(on_quitting)


@dataclass(frozen=True)
class Samples:
    """Samples read back from one or more CSV files, as arrays."""

    start_s: np.ndarray
    latency_ms: np.ndarray
    batch_size: np.ndarray
    ok: np.ndarray

    def __len__(self) -> int:
        return len(self.latency_ms)


def read_samples(*paths: Path) -> Samples:
    """Concatenate the rows of ``paths`` (missing files count as empty)."""
    rows: list[list[float]] = []
    for path in paths:
        if not path.exists():
            continue
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is not None and tuple(header) != COLUMNS:
                raise ValueError(f"{path} is not a samples file (header {header})")
            rows.extend([float(v) for v in row] for row in reader if row)
    table = np.asarray(rows, dtype=np.float64).reshape(-1, len(COLUMNS))
    return Samples(
        start_s=table[:, 0],
        latency_ms=table[:, 1],
        batch_size=table[:, 2].astype(np.int64),
        ok=table[:, 3].astype(bool),
    )
