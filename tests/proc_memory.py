"""Resident memory of a process group from /proc (a server and its backend stubs).

Usage::

    before = group_memory(server.pid, reset_peaks=True)
    ...  # requests
    after = group_memory(server.pid)
    grew_mb = (after.peak_bytes - before.rss_bytes) / 2**20

``peak_bytes`` sums each process's ``VmHWM`` (the kernel's high-water mark of
its resident set), so a spike between two readings is still seen, without
sampling in a thread. ``reset_peaks=True`` first lowers each high-water mark to
the current resident set (``/proc/PID/clear_refs`` value 5, Linux 4.0+), so an
earlier peak (TensorFlow's import) does not count as growth.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class GroupMemory:
    """Resident bytes of every live process of one group, now and at their peaks."""

    pids: tuple[int, ...]
    rss_bytes: int
    peak_bytes: int


def group_memory(pgid: int, *, reset_peaks: bool = False) -> GroupMemory:
    """Sum ``VmRSS`` and ``VmHWM`` over the processes whose process group is ``pgid``."""
    pids, rss, peak = [], 0, 0
    if reset_peaks:
        for pid in group_memory(pgid).pids:
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                (Path("/proc") / str(pid) / "clear_refs").write_text("5")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            status = (entry / "status").read_text()
        except (OSError, IndexError):
            continue  # Exited while we looked.
        if int(stat[2]) != pgid:  # Fields after ")": state, ppid, pgrp.
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if "VmRSS" not in fields:
            continue  # A zombie has no memory left.
        pids.append(int(entry.name))
        rss += int(fields["VmRSS"].split()[0]) * 1024
        peak += int(fields["VmHWM"].split()[0]) * 1024
    return GroupMemory(pids=tuple(sorted(pids)), rss_bytes=rss, peak_bytes=peak)
