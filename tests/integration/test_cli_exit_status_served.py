"""The exit-status table against the real session server: ready 0, unknown model 4.

The unavailable (3) and user-error (2) rows are in tests/unit/test_cli_exit_status.py.
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from medserve_client import cli
from medserve_client.contract import ExitStatus

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("url_of", ["grpc_url", "http_url"])
def test_health_exits_0_when_ready_and_4_for_a_model_the_server_does_not_have(
    local_triton: Any, url_of: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url = getattr(local_triton, url_of)
    out = io.StringIO()
    assert cli.main(["--url", url, "health"], stdout=out) == ExitStatus.OK
    assert out.getvalue().strip().endswith("model medcnn: ready")
    out = io.StringIO()
    assert cli.main(["--url", url, "--model", "nope", "health"], stdout=out) == 4
    assert out.getvalue().strip().endswith("model nope: NOT ready")
    assert capsys.readouterr().err.startswith("medserve-client: error: model 'nope' is not ready")


def test_loadtest_run_exits_4_before_locust_when_the_model_is_not_served(
    local_triton: Any, tmp_path: Path
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "medserve_bench.runner", "--out", str(tmp_path),
         "--host", local_triton.grpc_url, "--model", "nope", "--run-time", "30s"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == ExitStatus.MODEL_NOT_READY, done.stderr[-2000:]
    assert "model 'nope' is not ready" in done.stderr
    assert not (tmp_path / "summary.json").exists(), "locust must not have run"
