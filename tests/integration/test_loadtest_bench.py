"""bench-quick's machinery, run for real on the tiny model: servers, peer, limit, table.

Durations are tiny and nothing here asserts a speed: the test checks that every
cell was measured with validated answers and that the outputs are well formed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from medserve.spec import ModelSpec

pytestmark = pytest.mark.integration

# The float32 cell is left out here: it needs a bench-only TensorFlow export and
# one more backend stub (half a minute on 2 cores); its config edit is unit-tested.
EXPECTED_CELLS = [
    "medserve@1", "medserve@2", "nobatch@2", "peer@1", "peer@2",
    "payload uint8@2", "payload encoded@2",
]  # fmt: skip


@pytest.fixture(scope="module")
def keras_model(served_spec: ModelSpec, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Keras model ``served_repo`` was exported from (same builder, same seed)."""
    from medserve.model import build_reference_cnn

    model = build_reference_cnn(
        served_spec.input_shape, served_spec.num_classes, filters=(4, 8, 8), dense_units=8, seed=0
    )
    path = tmp_path_factory.mktemp("bench_keras") / "model.keras"
    model.save(path)
    return path


def test_bench_quick_measures_every_cell_and_writes_table_json_and_plot(
    served_repo: Path, keras_model: Path, tmp_path: Path
) -> None:
    out = tmp_path / "results"
    done = subprocess.run(
        [
            sys.executable, "-m", "medserve_bench.bench", "--quick", "--repo", str(served_repo),
            "--keras-model", str(keras_model), "--work", str(tmp_path / "work"),
            "--out", str(out), "--concurrency", "1,2", "--compare-at", "2",
            "--duration-s", "1", "--warmup-s", "0.3", "--limit-batch-sizes", "1,4",
            "--limit-duration-s", "0.5", "--peer-workers", "1", "--pool-size", "8",
            "--payloads", "uint8,encoded",
        ],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]

    document: dict[str, Any] = json.loads((out / "bench.json").read_text())
    cells = {c["cell"]: c for c in document["cells"]}
    assert sorted(cells) == sorted(EXPECTED_CELLS)
    for name, cell in cells.items():
        assert cell["failures"] == 0, (name, cell["first_error"])
        assert cell["requests"] > 0, name
        assert cell["inferences_per_s"] > 0, name
        assert cell["p50_ms"] <= cell["p99_ms"], name
    # Payload sizes are what travels.
    assert cells["payload uint8@2"]["bytes_per_request"] == 32 * 32 * 3
    assert cells["payload encoded@2"]["bytes_per_request"] > 0
    # Triton's window: batching on forms batches of >= 1, batching off exactly 1.
    assert cells["medserve@2"]["server_inferences_per_execution"] >= 1.0
    assert cells["nobatch@2"]["server_inferences_per_execution"] == 1.0
    assert cells["peer@2"]["server_inferences_per_execution"] is None

    limit = document["limit"]
    assert limit["best_batch_size"] in (1, 4) and limit["best_images_per_s"] > 0
    for name in ("served_vs_limit", "medserve_vs_peer", "batching_on_vs_off"):
        ratio = document["ratios"][name]
        assert ratio["value"] > 0 and isinstance(ratio["met"], bool), name
    assert "encoded_vs_uint8" in document["ratios"]

    table = (out / "bench.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    # Cells: header, separator, one row each; ratios: header, separator, four rows.
    assert len(rows) == 2 + len(EXPECTED_CELLS) + 2 + 4
    assert all(row.count("|") == rows[0].count("|") for row in rows[: 2 + len(EXPECTED_CELLS)])
    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
