"""Resident memory of a server's whole process group, with exact peaks from the kernel.

Usage::

    with watch_memory(server.pid) as window:
        ...  # send the bombs
    window.before_bytes, window.peak_bytes, window.peak_growth_bytes

``tritonserver`` and its Python-backend stubs share one process group (see
``medserve.process_group``), so the group is what a pod's memory limit sees.
Peaks are not sampled: the kernel keeps each process's high-water mark
(``VmHWM``), and writing ``5`` to ``/proc/<pid>/clear_refs`` resets it, so a
window's peak is read exactly when the window closes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from medserve.process_group import group_members

_MB = 1024 * 1024


def _status_kib(pid: int, field: str) -> int:
    """A ``VmXXX:`` field of ``/proc/<pid>/status`` in KiB (0 once the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def group_rss_bytes(pgid: int) -> int:
    """Resident memory of every live process in group ``pgid``, summed."""
    return sum(_status_kib(pid, "VmRSS") for pid in group_members(pgid)) * 1024


def group_peak_bytes(pgid: int) -> int:
    """Sum of the high-water marks of the group's processes (an upper bound of its peak)."""
    return sum(_status_kib(pid, "VmHWM") for pid in group_members(pgid)) * 1024


def reset_peaks(pgid: int) -> None:
    """Start every process's high-water mark afresh at its current resident size."""
    for pid in group_members(pgid):
        with contextlib.suppress(OSError):  # Exited meanwhile, or not ours.
            Path(f"/proc/{pid}/clear_refs").write_text("5")


@dataclass
class MemoryWindow:
    """Resident memory of a process group across a block of work, in bytes."""

    pgid: int
    before_bytes: int = 0
    peak_bytes: int = 0
    after_bytes: int = 0

    @property
    def peak_growth_bytes(self) -> int:
        """How far the peak rose above the start."""
        return max(0, self.peak_bytes - self.before_bytes)

    @property
    def growth_ratio(self) -> float:
        """``after / before - 1``: what the block left behind."""
        return self.after_bytes / self.before_bytes - 1.0 if self.before_bytes else 0.0


@contextlib.contextmanager
def watch_memory(pgid: int) -> Iterator[MemoryWindow]:
    """Measure the group's resident memory before, at the peak of, and after a block."""
    reset_peaks(pgid)
    window = MemoryWindow(pgid=pgid, before_bytes=group_rss_bytes(pgid))
    try:
        yield window
    finally:
        window.peak_bytes = max(group_peak_bytes(pgid), window.before_bytes)
        window.after_bytes = group_rss_bytes(pgid)


def megabytes(value: int) -> float:
    """Bytes as MiB, for the table."""
    return value / _MB
