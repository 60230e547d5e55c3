"""``medserve tune`` for real: the tiny export on the wheel's tritonserver, a tiny budget.

The budget is chosen so that screening fits and no confirmation cell can (a
confirmation cell asks for more seconds than the whole budget), so the run
must stop early whatever the machine's speed: the test asserts on the cells
run, never on wall-clock time. Then the written ``tuned`` configs must parse
as ``ModelConfig`` messages, describe the winner, and be served: every model
of the repository loads under ``--model-config-name=tuned`` and answers.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from medserve.local_triton import LocalTriton
from medserve.model_config import parse_config
from medserve.spec import ModelSpec
from medserve_bench.tune.space import Candidate

pytestmark = pytest.mark.integration

BUDGET_S = 150
CONFIRM_S = 400  # More than the budget: confirmation can never start.


@pytest.fixture(scope="module")
def tuned(served_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One tuner run on a copy of the served repository (the session's stays untouched)."""
    root = tmp_path_factory.mktemp("tune")
    repo = root / "model_repository"
    shutil.copytree(served_repo, repo)
    out = root / "report"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "medserve_bench.tune",
            str(repo),
            "--out",
            str(out),
            f"--budget-s={BUDGET_S}",
            "--concurrency=2",
            "--screen-s=0.5",
            "--warmup-s=0.3",
            f"--confirm-s={CONFIRM_S}",
            "--dimensions=runtime,max_batch_size",
            "--client=raw",
        ],
        capture_output=True,
        text=True,
        timeout=BUDGET_S + 120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads((out / "tune.json").read_text())
    return {"repo": repo, "out": out, "report": report, "stdout": done.stdout}


def test_tune_stops_at_the_budget_before_a_cell_that_cannot_fit(tuned: dict[str, Any]) -> None:
    report = tuned["report"]
    assert report["stopped_early"] is True
    assert "the next cell needs" in report["stop_reason"]
    cells = report["cells"]
    assert 1 <= report["cells_run"] == len(cells)
    assert {c["stage"] for c in cells} == {"screen"}
    # At most the screening plan: 2 runtimes, then batch sizes 8 and 16 (spec max 16).
    assert len({c["config"] for c in cells}) <= 3
    for cell in cells:
        assert cell["error"] is None, cell
        assert cell["images_per_s"] > 0 and cell["p50_ms"] <= cell["p99_ms"]
        assert cell["images_per_execution"] >= 1.0


def test_tune_writes_the_report_table_and_plot(tuned: dict[str, Any]) -> None:
    markdown = (tuned["out"] / "tune.md").read_text()
    assert (
        "| config | stage | in flight | images/s | p50 ms | p99 ms | images/execution |" in markdown
    )
    assert f"**Best: `{tuned['report']['best']['label']}`**" in markdown
    assert (tuned["out"] / "tune.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert tuned["report"]["meta"]["written"]


def test_tuned_config_is_the_winner_as_a_model_config(
    tuned: dict[str, Any], served_spec: ModelSpec
) -> None:
    repo: Path = tuned["repo"]
    config = parse_config(repo / served_spec.name / "configs" / "tuned.pbtxt")
    best = tuned["report"]["best"]
    # Every setting the winner stands for, compared as written. Not the label:
    # two preferred-size policies can write the same sizes ("runtime" and
    # "max" at max batch 8 on onnxruntime), and the file cannot say which.
    written = Candidate.from_config(config).to_dict()
    assert {k: v for k, v in written.items() if k != "label"} == {
        k: v for k, v in best.items() if k != "label"
    }
    assert config.max_batch_size == best["max_batch_size"]
    assert config.parameters["runtime"].string_value == best["runtime"]
    local = parse_config(repo / served_spec.name / "configs" / "local.pbtxt")
    assert config.input == local.input and config.output == local.output


def test_the_server_serves_the_whole_repository_under_the_tuned_config(
    tuned: dict[str, Any], served_spec: ModelSpec, start_server: Any
) -> None:
    server: LocalTriton = start_server(tuned["repo"], config_name="tuned")
    names = {served_spec.name, served_spec.encoded_name, served_spec.explain_name}
    assert names <= set(server.models)
    best = tuned["report"]["best"]
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        served = client.get_model_config(served_spec.name, as_json=True)["config"]
        assert served["max_batch_size"] == best["max_batch_size"]
        assert served["parameters"]["runtime"]["string_value"] == best["runtime"]
        images = np.zeros((2, *served_spec.input_shape), dtype=np.uint8)
        tensor = grpcclient.InferInput(served_spec.input_name, list(images.shape), "UINT8")
        tensor.set_data_from_numpy(images)
        result = client.infer(served_spec.name, [tensor])
        probabilities = result.as_numpy(served_spec.output_name)
        assert probabilities.shape == (2, served_spec.num_classes)
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
