"""Stopping a ``medserve serve`` process a test started, whatever the test did.

Usage::

    proc = subprocess.Popen([medserve, "serve", repo, ...], ...)
    try:
        ...
    finally:
        stop_cli(proc)
"""

from __future__ import annotations

import signal
import subprocess
from typing import Any


def stop_cli(proc: subprocess.Popen[Any], *, timeout_s: float = 60.0) -> None:
    """Ctrl-C the CLI (it stops its server group), killing it if it does not exit in time."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
