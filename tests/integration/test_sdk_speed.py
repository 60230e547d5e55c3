"""``medserve_bench.sdk_speed`` run for real on the tiny model: rows produced, answers right.

The workload is tiny and nothing here asserts a speed: the tests check that
every variant was measured in every round, in changing orders, that the ratios
are taken against the right baselines, and that the answers were checked
(against each other and against the SavedModel called in process).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from medserve_bench import sdk_speed
from medserve_locust.validate import WrongAnswerError

pytestmark = pytest.mark.integration


def test_measure_sdk_rows_measures_every_variant_every_round_with_right_answers(
    local_triton: Any, savedmodel_reference: Any
) -> None:
    report = sdk_speed.measure_sdk_rows(
        local_triton.grpc_url,
        "medcnn",
        concurrency=3,
        images=12,
        rounds=2,
        warmup_images=3,
        expected=savedmodel_reference.classify,
    )
    assert [row.variant for row in report.rows] == list(sdk_speed.VARIANTS)
    assert len(set(report.orders)) == 2  # The order changes between rounds.
    for row in report.rows:
        assert len(row.by_round) == 2
        assert all(rate > 0 for rate in row.by_round)
        assert row.cpu_ms_per_image > 0
        # Round trips overlap at most `concurrency` deep: a bound, not a timing.
        assert 0 < row.in_flight <= report.concurrency * 1.001
        assert row.images_per_s == pytest.approx(float(np.median(row.by_round)))
    blocking, asynchronous = report.row(sdk_speed.SDK_BLOCKING), report.row(sdk_speed.SDK_ASYNC)
    assert blocking.baseline == sdk_speed.RAW_THREADS and blocking.ratio is not None
    assert asynchronous.baseline == sdk_speed.RAW_AIO and asynchronous.ratio is not None
    assert asynchronous.vs_threads is not None
    assert report.row(sdk_speed.RAW_THREADS).ratio is None
    table = report.markdown()
    assert all(variant in table for variant in sdk_speed.VARIANTS)


def test_measure_sdk_rows_refuses_numbers_from_wrong_answers(local_triton: Any) -> None:
    def wrong(images: np.ndarray) -> np.ndarray:
        return np.full((len(images), 2), 0.5, dtype=np.float32) + 0.25 * (images.mean() > 0)

    with pytest.raises(WrongAnswerError, match="answered differently"):
        sdk_speed.measure_sdk_rows(
            local_triton.grpc_url,
            "medcnn",
            concurrency=2,
            images=4,
            rounds=1,
            variants=[sdk_speed.SDK_BLOCKING],
            expected=wrong,
        )


def test_sdk_speed_command_prints_the_table_and_writes_json(
    local_triton: Any, tmp_path: Path
) -> None:
    out = tmp_path / "sdk.json"
    done = subprocess.run(
        [
            sys.executable, "-m", "medserve_bench.sdk_speed", "--url", local_triton.grpc_url,
            "--concurrency", "2", "--images", "6", "--rounds", "1", "--json", str(out),
        ],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| Client.classify_many |" in done.stdout
    saved = json.loads(out.read_text())
    assert [row["variant"] for row in saved["rows"]] == list(sdk_speed.VARIANTS)
    assert saved["concurrency"] == 2 and saved["images"] == 6
