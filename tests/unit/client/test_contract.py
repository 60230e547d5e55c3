"""The served contract: names, metadata parsing and statistics windows, no server."""

from __future__ import annotations

from typing import Any

import pytest

from medserve_client import InferenceError, contract


def test_contract_names_are_those_the_exporter_writes() -> None:
    from medserve.spec import ModelSpec

    spec = ModelSpec()
    assert (spec.input_name, spec.encoded_input_name, spec.output_name) == (
        contract.INPUT_NAME,
        contract.ENCODED_INPUT_NAME,
        contract.OUTPUT_NAME,
    )
    assert spec.encoded_name == contract.encoded_model(spec.name) == spec.name + "_encoded"


def test_image_target_reads_names_and_sizes_from_metadata_with_string_dims() -> None:
    classifier = {
        "name": "medcnn",
        "inputs": [{"name": "image", "datatype": "UINT8", "shape": ["-1", "224", "224", "3"]}],
        "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": ["-1", "2"]}],
    }
    ensemble = {
        "name": "medcnn_encoded",
        "inputs": [{"name": "image_bytes", "datatype": "BYTES", "shape": [-1, 1]}],
        "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 2]}],
    }
    target = contract.image_target_from(classifier, entry=ensemble)
    assert (target.model, target.input_name, target.encoded) == (
        "medcnn_encoded",
        "image_bytes",
        True,
    )
    assert (target.image_size, target.num_classes) == ((224, 224), 2)
    with pytest.raises(InferenceError, match="expected"):
        contract.image_target_from({**classifier, "outputs": [{"name": "x", "shape": [-1]}]})


def _stats(inferences: int, executions: int, requests: int, queue_ns: int, infer_ns: int) -> dict:
    stage = {"count": str(requests)}
    return {
        "model_stats": [
            {
                "name": "medcnn",
                "version": "1",
                "inference_count": str(inferences),
                "execution_count": str(executions),
                "inference_stats": {
                    "success": {**stage, "ns": str(queue_ns + infer_ns)},
                    "queue": {**stage, "ns": str(queue_ns)},
                    "compute_input": {**stage, "ns": "0"},
                    "compute_infer": {**stage, "ns": str(infer_ns)},
                    "compute_output": {**stage, "ns": "0"},
                },
            }
        ]
    }


def test_statistics_window_is_the_difference_of_two_snapshots() -> None:
    before = contract.parse_statistics(_stats(64, 1, 64, 10**9, 10**9))  # warm-up
    after = contract.parse_statistics(_stats(64 + 40, 1 + 10, 64 + 40, 10**9 + 80 * 10**6,
                                                  10**9 + 400 * 10**6))  # fmt: skip
    window = contract.diff(before, after)["medcnn"]
    assert (window.requests, window.inferences, window.executions) == (40, 40, 10)
    assert window.inferences_per_execution == 4.0
    assert window.mean_queue_ms == pytest.approx(2.0)
    assert window.mean_compute_ms == pytest.approx(10.0)


def test_statistics_diff_leaves_out_idle_models_and_refuses_counters_going_backwards() -> None:
    same = contract.parse_statistics(_stats(5, 5, 5, 0, 0))
    assert contract.diff(same, same) == {}
    with pytest.raises(ValueError, match="reloaded"):
        contract.diff(contract.parse_statistics(_stats(9, 9, 9, 0, 0)), same)


class _ScriptedStatistics:
    """Answers ``get_inference_statistics`` from a list of documents, one per call."""

    def __init__(self, documents: list[dict[str, Any]]) -> None:
        self.documents = documents
        self.calls = 0

    def get_inference_statistics(self, model_name: str, as_json: bool) -> dict[str, Any]:
        document = self.documents[min(self.calls, len(self.documents) - 1)]
        self.calls += 1
        return document


def test_statistics_window_waits_until_triton_counted_every_request() -> None:
    # Triton counts the last execution after answering: the second reading
    # still misses it, the third has it.
    reader = _ScriptedStatistics(
        [_stats(0, 0, 0, 0, 0), _stats(6, 2, 6, 0, 0), _stats(8, 3, 8, 0, 0)]
    )
    window = contract.StatsWindow.open(reader, "medcnn")
    counted = window.close(requests=8, timeout_s=30)
    assert (counted.requests, counted.inferences, counted.executions) == (8, 8, 3)
    assert reader.calls == 3


def test_settled_snapshot_returns_once_two_readings_agree() -> None:
    reader = _ScriptedStatistics(
        [_stats(6, 2, 6, 0, 0), _stats(8, 3, 8, 0, 0), _stats(8, 3, 8, 0, 0)]
    )
    counters = contract.settled_snapshot(reader, "medcnn", timeout_s=30)["medcnn"]
    assert (counters.inference_count, counters.execution_count) == (8, 3)
    assert reader.calls == 3
