"""Who used the CPUs during a benchmark cell: the load generator, the server, everything else.

Usage::

    clock = CpuClock(server_pid=triton.pid)
    start = clock.read()
    ...                                   # the measurement window
    usage = clock.read().since(start, images=1200)
    usage.client_cores, usage.server_cores, usage.other_cores, usage.server_cpu_ms_per_image

On this benchmark's machine the load generator (this process: every caller
thread of :mod:`medserve_bench.driver`) and the server share the same cores.
The difference of two readings says how many of them each side kept busy over
the window and how much CPU each spent per image, which is what explains a
ratio: a server that needs more CPU per image than the in-process limit, or a
client that takes cores the server would otherwise have. ``other`` is the rest
of the machine's busy time (other people's work on a shared machine; near zero
on a quiet one).
"""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass

import psutil


def own_cpu_s() -> float:
    """User plus system CPU seconds of this process, all threads (not its children)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def tree_cpu_s(pid: int | None) -> float | None:
    """User plus system CPU seconds of ``pid`` and every live descendant (None: no process).

    A server's backend stubs (or gunicorn's workers, or PyTriton's
    ``tritonserver``) are its descendants; their CPU is the server's.
    """
    if pid is None:
        return None
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return None
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.Error:  # Exited between the listing and the reading.
            continue
        total += times.user + times.system
    return total


def machine_busy_cpu_s() -> float:
    """CPU seconds the whole machine spent busy (every core, not idle or waiting on I/O)."""
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


@dataclass(frozen=True)
class CpuReading:
    """CPU seconds used so far, read at one moment."""

    at_s: float
    client_s: float
    server_s: float | None
    machine_s: float

    def since(self, start: CpuReading, *, images: int) -> CpuUsage:
        """What was used between ``start`` and this reading, for ``images`` images."""
        window = max(self.at_s - start.at_s, 1e-9)
        client = self.client_s - start.client_s
        server = (
            self.server_s - start.server_s
            if self.server_s is not None and start.server_s is not None
            else None
        )
        other = self.machine_s - start.machine_s - client - (server or 0.0)
        return CpuUsage(
            window_s=window, client_s=client, server_s=server, other_s=max(other, 0.0),
            images=images,
        )  # fmt: skip


@dataclass(frozen=True)
class CpuUsage:
    """CPU used over one window by the load generator, the server and the rest."""

    window_s: float
    client_s: float
    server_s: float | None
    other_s: float
    images: int

    @property
    def client_cores(self) -> float:
        """Cores the load generator kept busy on average."""
        return self.client_s / self.window_s

    @property
    def server_cores(self) -> float | None:
        """Cores the server (with its children) kept busy on average."""
        return None if self.server_s is None else self.server_s / self.window_s

    @property
    def other_cores(self) -> float:
        """Cores busy with anything else on the machine."""
        return self.other_s / self.window_s

    @property
    def client_cpu_ms_per_image(self) -> float | None:
        """Load-generator CPU per classified image."""
        return self.client_s * 1000.0 / self.images if self.images else None

    @property
    def server_cpu_ms_per_image(self) -> float | None:
        """Server CPU per classified image."""
        if self.server_s is None or not self.images:
            return None
        return self.server_s * 1000.0 / self.images

    def to_dict(self) -> dict[str, float | None]:
        """The figures bench.json records (rounded)."""

        def r(value: float | None) -> float | None:
            return None if value is None else round(value, 3)

        return {
            "client_cores": r(self.client_cores),
            "server_cores": r(self.server_cores),
            "other_cores": r(self.other_cores),
            "client_cpu_ms_per_image": r(self.client_cpu_ms_per_image),
            "server_cpu_ms_per_image": r(self.server_cpu_ms_per_image),
        }


class CpuClock:
    """Reads this process's, one server tree's and the machine's CPU seconds together."""

    def __init__(self, server_pid: int | None) -> None:
        self.server_pid = server_pid

    def read(self) -> CpuReading:
        """One reading now."""
        return CpuReading(
            at_s=time.perf_counter(),
            client_s=own_cpu_s(),
            server_s=tree_cpu_s(self.server_pid),
            machine_s=machine_busy_cpu_s(),
        )
