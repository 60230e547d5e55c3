"""loadtest/run drives real locust against the session's real Triton and judges every answer.

These tests check the machinery (exit codes, summary.json, failure accounting),
never a speed: throughput and latency come from ``make bench``, not from tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from loadtest_process import run_loadtest

pytestmark = pytest.mark.integration


def test_loadtest_grpc_smoke_run_has_no_failures_and_a_complete_summary(
    local_triton: Any, tmp_path: Path
) -> None:
    code, summary, log = run_loadtest(
        tmp_path, "--host", local_triton.grpc_url, "--users", "4", "--spawn-rate", "4",
        "--run-time", "10s", "--labels", "normal,lesion", "--batch-size", "2",
    )  # fmt: skip

    assert code == 0, log[-3000:]
    assert summary["failures"] == {"count": 0, "ratio": 0.0}
    rate = summary["throughput"]
    assert rate["requests"] > 0
    assert rate["inferences"] == 2 * rate["requests"]  # batch size counted
    latency = summary["latency_ms"]
    assert latency["count"] == rate["requests"]
    assert 0 < latency["p50_ms"] <= latency["p90_ms"] <= latency["p95_ms"] <= latency["p99_ms"]
    assert latency["p99_ms"] <= latency["max_ms"]
    server = summary["server"]["medcnn"]
    # Triton saw at least what locust counted (the window also holds in-flight requests).
    assert server["inferences"] >= rate["inferences"]
    assert server["inferences_per_execution"] >= 1.0
    assert server["mean_queue_ms"] is not None and server["mean_compute_ms"] > 0
    for name in ("samples.csv", "report.html", "locust_stats.csv"):
        assert (tmp_path / name).is_file(), name


def test_loadtest_counts_answers_with_the_wrong_class_count_as_failures_and_exits_1(
    local_triton: Any, tmp_path: Path
) -> None:
    # The served model has 2 classes; expecting 3 labels makes every real answer wrong.
    code, summary, log = run_loadtest(
        tmp_path, "--host", local_triton.grpc_url, "--users", "2", "--spawn-rate", "2",
        "--run-time", "3s", "--labels", "normal,lesion,other",
    )  # fmt: skip

    assert code == 1, log[-3000:]
    assert summary["throughput"]["requests"] == 0
    assert summary["failures"]["count"] > 0
    assert summary["failures"]["ratio"] == 1.0
    assert summary["latency_ms"]["p50_ms"] is None  # no success, no made-up latency
    failures = (tmp_path / "locust_failures.csv").read_text()
    assert "WrongAnswerError" in failures and "expected (1, 3)" in failures


def test_loadtest_http_encoded_run_sends_jpeg_to_the_ensemble_without_failures(
    local_triton: Any, tmp_path: Path
) -> None:
    code, summary, log = run_loadtest(
        tmp_path, "--protocol", "http", "--host", local_triton.http_url, "--users", "2",
        "--spawn-rate", "2", "--run-time", "4s", "--input-mode", "encoded",
        "--labels", "normal,lesion",
    )  # fmt: skip

    assert code == 0, log[-3000:]
    assert summary["failures"]["count"] == 0
    assert summary["throughput"]["requests"] > 0
    # The requests went to the ensemble, whose classifier step did the inference.
    assert summary["server"]["medcnn_encoded"]["requests"] > 0
    assert summary["server"]["medcnn_preprocess"]["requests"] > 0
    assert summary["server"]["medcnn"]["inferences"] > 0
