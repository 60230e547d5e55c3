"""Start a server in its own process group and stop the whole group, never leaving orphans.

Usage::

    proc = spawn_group(["tritonserver", ...], env=env, log_file=handle)
    ...
    stop_group(proc, grace_s=20.0)      # SIGTERM, then SIGKILL to the group
    assert not group_members(proc.pid)
    remove_shared_memory("medserve_1a2b3c4d_")   # what a killed server left in /dev/shm

``tritonserver`` starts one Python-backend stub process per model instance.
They inherit its process group (the group id is the server's pid), so the
group is the unit to watch and to kill: stopping only the server could leave
a stub behind if the server itself is killed.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> Callable[[], None]:
    """A ``preexec_fn`` that makes the child get SIGTERM when its parent dies."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)

    def preexec() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)

    return preexec


def spawn_group(
    command: Sequence[str],
    *,
    env: dict[str, str],
    log_file: IO[Any],
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``command`` as the leader of a new process group.

    Args:
        command: Executable and arguments.
        env: Its environment.
        log_file: Receives its stdout and stderr.
        cwd: Its working directory.

    The child gets SIGTERM if this process dies (``PR_SET_PDEATHSIG``), so a
    crashed test run or a killed CLI does not leave a server behind. Linux
    sends that signal when the *thread* that forked exits, so it is only set
    when starting from the main thread (which lives as long as the process);
    from another thread the caller must stop the server itself.
    """
    on_main_thread = threading.current_thread() is threading.main_thread()
    preexec = _die_with_parent() if on_main_thread and os.name == "posix" else None
    return subprocess.Popen(
        list(command),
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        # Own group: a terminal's Ctrl-C reaches only the launcher, which then
        # stops the server in order; and the group can be killed as a unit.
        start_new_session=True,
        # Only prctl runs between fork and exec: safe even in a threaded parent.
        preexec_fn=preexec,
    )


def group_members(pgid: int) -> list[int]:
    """Pids of live (not zombie) processes in process group ``pgid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # Exited while we looked.
        # Fields after the parenthesised command: state, ppid, pgrp, ...
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 2 and fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def _kill_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _wait_group_gone(pgid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while group_members(pgid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def stop_group(
    proc: subprocess.Popen[bytes],
    *,
    grace_s: float,
    stragglers_s: float = 5.0,
) -> int | None:
    """Stop the group led by ``proc``: politely, then by force.

    Args:
        proc: The group leader from :func:`spawn_group`.
        grace_s: How long the leader may take to exit after SIGTERM (Triton
            waits for in-flight requests up to its ``--exit-timeout-secs``).
        stragglers_s: How long the rest of the group (backend stubs) may take
            to follow the leader before the group gets SIGKILL.

    Returns:
        The leader's exit status (negative: killed by that signal), or None if
        it could not be reaped.
    """
    pgid = proc.pid
    if proc.poll() is None:
        # SIGTERM to the server only: it unloads models and stops its stubs
        # in order. Signalling the stubs too would make them die mid-unload.
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            log.warning(
                "tritonserver (pid %d) ignored SIGTERM for %.0f s: killing it", pgid, grace_s
            )
            _kill_group(pgid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
    if not _wait_group_gone(pgid, stragglers_s):
        log.warning(
            "killing %d leftover process(es) of tritonserver group %d",
            len(group_members(pgid)),
            pgid,
        )
        _kill_group(pgid, signal.SIGKILL)
        _wait_group_gone(pgid, 5.0)
    return proc.poll()


def remove_shared_memory(prefix: str, shm_dir: Path = Path("/dev/shm")) -> None:
    """Remove the Python backend's regions of a stopped server.

    Triton unlinks them on a clean exit; a killed server leaves them behind,
    and they hold memory until the machine reboots. The prefix is unique to
    one server, so nothing of another server matches.
    """
    if not prefix:
        return
    for region in shm_dir.glob(prefix + "*"):
        try:
            region.unlink()
            log.info("removed leftover shared memory %s", region.name)
        except OSError:
            pass  # Already gone, or not ours to remove.


def describe_exit_status(status: int | None) -> str:
    """``"exited with status 1"``, ``"was killed by SIGKILL"``, for messages."""
    if status is None:
        return "could not be reaped"
    if status < 0:
        try:
            name = signal.Signals(-status).name
        except ValueError:
            name = f"signal {-status}"
        return f"was killed by {name}"
    return f"exited with status {status}"
