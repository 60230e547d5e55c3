"""bench-quick's machinery, run for real on a small model: servers, peers, limits, table.

Durations are tiny and nothing here asserts a speed: the test checks that every
cell was measured with validated answers (the PyTriton peer really started and
answered), that the in-process limit covers every runtime (INT8 included: the
model is the small trained one exported with ``--int8``), that each cell
carries the CPU time of the load generator and of its server, and that the
outputs are well formed with a row for every issue-13 target.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from int8_model import Int8Export

from medserve.model_config import LOCAL_RUNTIME

pytestmark = pytest.mark.integration

# The model: ``int8_export`` (trained, exported with --int8), so INT8 is limited
# in process and served (its local-int8 config). The float32 cell is left out
# here: it needs a bench-only TensorFlow export and one more backend stub (half
# a minute on 2 cores); its config edit is unit-tested.
# The exported repository has model.onnx, so the classifier is also served
# under the local runtime configs/local.pbtxt does not name.
_OTHER_RUNTIME = "tensorflow" if LOCAL_RUNTIME == "onnxruntime" else "onnxruntime"
# The PyTriton peer at 2 and 4 in flight, and medserve under the same raw load.
EXPECTED_CELLS = [
    "medserve@1", "medserve@2", "nobatch@2", f"runtime {_OTHER_RUNTIME}@2", "int8@2", "peer@2",
    "pytriton@2", "pytriton@4", "payload uint8@2", "payload uint8@4", "payload encoded@2",
]  # fmt: skip
TARGET_ROWS = 8  # Every issue-13 target, measured or not.


def test_bench_quick_measures_every_cell_and_writes_table_json_and_plot(
    int8_export: Int8Export, tmp_path: Path
) -> None:
    served_repo, keras_model = int8_export.repo, int8_export.model_path
    out = tmp_path / "results"
    done = subprocess.run(
        [
            sys.executable, "-m", "medserve_bench.bench", "--quick", "--repo", str(served_repo),
            "--keras-model", str(keras_model), "--work", str(tmp_path / "work"),
            "--out", str(out), "--concurrency", "1,2", "--compare-at", "2",
            "--duration-s", "2", "--warmup-s", "0.5", "--limit-batch-sizes", "1,4",
            "--limit-duration-s", "0.5", "--peer-workers", "1", "--pool-size", "8",
            "--payloads", "uint8,encoded", "--peer-concurrency", "2",
            "--pytriton-concurrency", "2,4", "--sdk-images", "8",
        ],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]

    document: dict[str, Any] = json.loads((out / "bench.json").read_text())
    cells = {c["cell"]: c for c in document["cells"]}
    assert sorted(cells) == sorted(EXPECTED_CELLS)
    for name, cell in cells.items():
        assert cell["failures"] == 0, (name, cell["first_error"])
        # A window of 2 s holds requests even on a loaded 2-core machine; the
        # bench's log (each cell's rate and p50) says what happened if not.
        assert cell["requests"] > 0, (name, done.stderr[-3000:])
        assert cell["inferences_per_s"] > 0, name
        assert cell["p50_ms"] <= cell["p99_ms"], name
    # Who used the CPUs: every cell has the load generator's and its server's
    # CPU time (Triton, gunicorn or PyTriton, each with its children).
    for name, cell in cells.items():
        assert cell["client_cpu_ms_per_image"] > 0 and cell["client_cores"] > 0, name
        assert cell["server_cpu_ms_per_image"] > 0 and cell["server_cores"] > 0, name
    # The PyTriton peer was served by its own Triton, with its own dynamic batcher.
    assert cells["pytriton@4"]["server_inferences_per_execution"] >= 1.0
    # Payload sizes are what travels.
    assert cells["payload uint8@2"]["bytes_per_request"] == 32 * 32 * 3
    assert cells["payload encoded@2"]["bytes_per_request"] > 0
    # Triton's window: batching on forms batches of >= 1, batching off exactly 1.
    assert cells["medserve@2"]["server_inferences_per_execution"] >= 1.0
    assert cells["nobatch@2"]["server_inferences_per_execution"] == 1.0
    assert cells["peer@2"]["server_inferences_per_execution"] is None

    limit = document["limit"]
    assert limit["best_batch_size"] in (1, 4) and limit["best_images_per_s"] > 0
    # Both runtimes measured in process (the tiny export has no INT8 model);
    # the limit is the best of them, and each has its CPU per image.
    runtimes = limit["runtimes"]
    assert sorted(name.split()[0] for name in runtimes) == ["onnxruntime"] * 2 + ["tensorflow"]
    assert sum(name.endswith(" int8") for name in runtimes) == 1
    assert limit["by_runtime"][limit["best_runtime"]] == max(limit["by_runtime"].values())
    assert all(r["cpu_ms_per_image"] > 0 for r in runtimes.values())
    assert cells[f"runtime {_OTHER_RUNTIME}@2"]["server_inferences_per_execution"] >= 1.0
    ratios = document["ratios"]
    for name in ("served_vs_limit", "medserve_vs_peer", "batching_on_vs_off", "p99_vs_p50",
                 "medserve_vs_pytriton"):  # fmt: skip
        assert ratios[name]["value"] > 0 and isinstance(ratios[name]["met"], bool), name
        assert ("queue" if name == "p99_vs_p50" else "ms CPU/image") in ratios[name]["cause"]
    assert ratios["medserve_vs_pytriton"]["p99_ms"]["peer"] > 0
    # INT8 served against the best FP32 cell, and in process against onnxruntime FP32.
    assert ratios["int8_vs_fp32_served"]["value"] > 0
    assert isinstance(ratios["int8_vs_fp32_served"]["met"], bool)
    assert ratios["limit_int8_vs_fp32"]["value"] > 0
    assert cells["int8@2"]["server_inferences_per_execution"] >= 1.0
    assert "encoded_vs_uint8" in ratios
    # The SDK rows come from medserve_bench.sdk_speed, run on the same server.
    for name in ("sdk_blocking_vs_plain", "sdk_async_vs_plain"):
        assert ratios[name]["value"] > 0 and "ms CPU/image" in ratios[name]["cause"], name
    assert document["meta"]["sdk_speed"]["concurrency"] == 2

    table = (out / "bench.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    # Runtimes, cells and targets: header, separator and one row each; then two other ratios.
    assert len(rows) == (2 + len(runtimes)) + (2 + len(EXPECTED_CELLS)) + (2 + TARGET_ROWS) + 4
    cell_rows = rows[2 + len(runtimes) : 4 + len(runtimes) + len(EXPECTED_CELLS)]
    assert all(row.count("|") == cell_rows[0].count("|") for row in cell_rows)
    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
