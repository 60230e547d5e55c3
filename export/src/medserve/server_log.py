"""Read the local Triton server's log: the lines that say why, and following it.

Usage::

    print(explain_failure(Path("tritonserver.log")))   # the error lines, or the tail
    follower = LogFollower(Path("tritonserver.log"), sys.stdout)
    follower.start(); ...; follower.stop()

Triton, its backends and the Python-backend stubs (TensorFlow) all write to one
file. When the server fails to start, the useful lines are its errors and the
model table rows marked UNAVAILABLE; known harmless noise of a machine without
a GPU is left out.
"""

from __future__ import annotations

import re
import threading
from collections import deque
from pathlib import Path
from typing import TextIO

# Lines every CPU-only start prints; they never explain a failure.
_NOISE = (
    "CUDA driver version is insufficient",
    "CudaDriverHelper",
    "DCGM",
    "NVML",
    "pinned memory",
    "_ssl",
    "cpu_feature_guard",
    "rebuild TensorFlow",
    "absl::InitializeLog",
    "Unable to register cu",
    "cuda_",
    "TF-TRT",
)
# Triton's glog prefix: E for error, F for fatal, then the date.
_ERROR_LINE = re.compile(r"^[EF]\d{4} ")
_REASON_WORDS = ("UNAVAILABLE", "error", "Error", "failed", "already in use", "Traceback")


def tail_lines(path: Path, count: int = 30) -> list[str]:
    """The last ``count`` lines of ``path`` (empty if it does not exist yet)."""
    try:
        with path.open(encoding="utf-8", errors="replace") as handle:
            return [line.rstrip("\n") for line in deque(handle, maxlen=count)]
    except OSError:
        return []


def reason_lines(path: Path, count: int = 12) -> list[str]:
    """The last ``count`` lines of ``path`` that look like the reason for a failure."""
    lines = tail_lines(path, 2000)
    reasons = [
        line
        for line in lines
        if (_ERROR_LINE.match(line) or any(word in line for word in _REASON_WORDS))
        and not any(noise in line for noise in _NOISE)
    ]
    return reasons[-count:]


def explain_failure(path: Path, count: int = 12) -> str:
    """A short, indented excerpt of the log for an error message."""
    lines = reason_lines(path, count) or tail_lines(path, count)
    if not lines:
        return f"(the server log {path} is empty)"
    body = "\n".join("    " + _shorten(line) for line in lines)
    return f"last lines of the server log {path} that say why:\n{body}"


def _shorten(line: str, limit: int = 400) -> str:
    # Triton's load table pads rows to the terminal width with spaces, and it
    # quotes Python tracebacks with escaped newlines: keep the first line.
    line = re.sub(r" {2,}", " ", line.strip().split("\\n")[0])
    return line if len(line) <= limit else line[:limit] + "..."


class LogFollower:
    """Copy lines appended to a log file to a stream, from a background thread."""

    def __init__(self, path: Path, sink: TextIO, *, poll_s: float = 0.2) -> None:
        """Prepare to follow ``path``; nothing happens until :meth:`start`.

        Args:
            path: The log file (may not exist yet).
            sink: Where lines go (the CLI passes ``sys.stdout``).
            poll_s: How often to look for new lines.
        """
        self._path = path
        self._sink = sink
        self._poll_s = poll_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="triton-log", daemon=True)

    def start(self) -> None:
        """Start copying, from the beginning of the file."""
        self._thread.start()

    def stop(self) -> None:
        """Copy what is left and stop."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        handle = None
        try:
            while True:
                stopping = self._stop.is_set()
                if handle is None:
                    try:
                        handle = self._path.open(encoding="utf-8", errors="replace")
                    except OSError:
                        handle = None
                if handle is not None:
                    for line in iter(handle.readline, ""):
                        self._sink.write(line)
                    self._sink.flush()
                if stopping:
                    return
                self._stop.wait(self._poll_s)
        finally:
            if handle is not None:
                handle.close()
