"""Running ``loadtest/run`` (the headless locust runner) as a test would.

Usage::

    code, summary, log = run_loadtest(tmp_path, "--host", server.grpc_url, "--run-time", "5s")
    assert code == 0, log[-3000:]
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any


def run_loadtest(out: Path, *args: str, timeout_s: float = 90.0) -> tuple[int, dict[str, Any], str]:
    """Run ``loadtest/run`` with ``args``; return its exit status, summary and output."""
    done = subprocess.run(
        [sys.executable, "-m", "medserve_bench.runner", "--out", str(out), *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    summary_path = out / "summary.json"
    assert summary_path.is_file(), done.stdout[-3000:] + done.stderr[-3000:]
    return done.returncode, json.loads(summary_path.read_text()), done.stderr
