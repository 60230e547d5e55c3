"""The exported model on the session's real tritonserver: same numbers, batching, metadata.

Usage::

    .venv/bin/pytest tests/integration/test_served_model.py

Every expected value comes from the same SavedModels called in-process
(``savedmodel_reference``) or from the exported spec and labels file.
"""

from __future__ import annotations

import io
import queue
import re
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from PIL import Image
from served_model_builder import SERVED_TEMPERATURE, build_served_keras_model

from medserve.calibration import temperature_scale
from medserve.local_triton import LocalTriton
from medserve.spec import LABELS_FILENAME, ModelSpec
from medserve.triton_backend.threads import available_cpus
from medserve_client import contract

pytestmark = pytest.mark.integration

ATOL = 1e-5


def _images(count: int, seed: int, spec: ModelSpec) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (count, *spec.input_shape), dtype=np.uint8)


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def _uint8_input(images: np.ndarray, spec: ModelSpec) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput(spec.input_name, list(images.shape), "UINT8")
    tensor.set_data_from_numpy(images)
    return tensor


def _bytes_input(files: list[bytes], spec: ModelSpec) -> grpcclient.InferInput:
    batch = np.array(files, dtype=object).reshape(-1, 1)
    tensor = grpcclient.InferInput(spec.encoded_input_name, list(batch.shape), "BYTES")
    tensor.set_data_from_numpy(batch)
    return tensor


def test_served_probabilities_equal_savedmodel_outputs_for_a_batch(
    client: Any, served_spec: ModelSpec, savedmodel_reference: Any
) -> None:
    images = _images(6, seed=1, spec=served_spec)

    result = client.infer(served_spec.name, [_uint8_input(images, served_spec)])
    served = result.as_numpy(served_spec.output_name)

    assert served.shape == (6, served_spec.num_classes)
    assert served.dtype == np.float32
    np.testing.assert_allclose(served, savedmodel_reference.classify(images), rtol=0, atol=ATOL)


def test_served_probabilities_are_the_keras_outputs_at_the_exported_temperature(
    client: Any, served_spec: ModelSpec
) -> None:
    images = _images(6, seed=4, spec=served_spec)
    raw = np.asarray(
        build_served_keras_model(served_spec)(images.astype(np.float32) / 255.0, training=False),
        dtype=np.float64,
    )
    served = client.infer(served_spec.name, [_uint8_input(images, served_spec)]).as_numpy(
        served_spec.output_name
    )
    calibrated = temperature_scale(raw, SERVED_TEMPERATURE)
    np.testing.assert_allclose(served, calibrated, rtol=0, atol=ATOL)
    assert np.max(np.abs(calibrated - raw)) > 100 * ATOL  # the temperature is visible


def test_encoded_png_probabilities_equal_savedmodel_outputs_for_a_batch(
    client: Any, served_spec: ModelSpec, savedmodel_reference: Any
) -> None:
    images = _images(5, seed=2, spec=served_spec)
    files = [_png(image) for image in images]

    result = client.infer(served_spec.encoded_name, [_bytes_input(files, served_spec)])
    served = result.as_numpy(served_spec.output_name)

    decoded = savedmodel_reference.decode(files)
    np.testing.assert_array_equal(decoded, images)  # A PNG at the model size is lossless.
    np.testing.assert_allclose(served, savedmodel_reference.classify(decoded), rtol=0, atol=ATOL)


def test_concurrent_requests_run_in_fewer_executions_than_inferences(
    client: Any, served_spec: ModelSpec, savedmodel_reference: Any
) -> None:
    images = _images(32, seed=3, spec=served_spec)
    stats = contract.StatsWindow.open(client, served_spec.name)
    done: queue.Queue[tuple[int, Any, Any]] = queue.Queue()

    # 32 single-image requests all in flight at once (async: no client threads).
    for index in range(len(images)):
        client.async_infer(
            served_spec.name,
            [_uint8_input(images[index : index + 1], served_spec)],
            callback=lambda result, error, index=index: done.put((index, result, error)),
        )
    answers = [done.get(timeout=120) for _ in images]

    for index, result, error in answers:
        assert error is None, error
        np.testing.assert_allclose(
            result.as_numpy(served_spec.output_name)[0],
            savedmodel_reference.classify(images[index : index + 1])[0],
            rtol=0,
            atol=ATOL,
        )
    counted = stats.close(requests=len(images))
    inferences, executions = counted.inferences, counted.executions
    assert inferences == len(images)
    assert executions < inferences, f"{inferences} inferences took {executions} executions"
    # With no queue delay the batcher never forms more than the preferred size
    # (the runtime's fastest batch), however many requests are queued.
    batching = client.get_model_config(served_spec.name, as_json=True)["config"]["dynamic_batching"]
    assert int(batching.get("max_queue_delay_microseconds", 0)) == 0
    largest = max(int(size) for size in batching["preferred_batch_size"])
    assert executions >= -(-inferences // largest), f"batches above {largest} images"


def test_classification_extension_returns_label_names_from_labels_file(
    client: Any, served_repo: Path, served_spec: ModelSpec, savedmodel_reference: Any
) -> None:
    labels = (served_repo / served_spec.name / LABELS_FILENAME).read_text().splitlines()
    images = _images(3, seed=4, spec=served_spec)
    wanted = grpcclient.InferRequestedOutput(served_spec.output_name, class_count=len(labels))

    result = client.infer(served_spec.name, [_uint8_input(images, served_spec)], outputs=[wanted])
    rows = result.as_numpy(served_spec.output_name)

    expected = savedmodel_reference.classify(images)
    assert labels == list(served_spec.labels)
    for row, probabilities in zip(rows, expected, strict=True):
        entries = [entry.decode().split(":") for entry in row]  # "score:index:label"
        assert sorted(label for _, _, label in entries) == sorted(labels)
        score, index, label = entries[0]
        assert label == labels[int(np.argmax(probabilities))]
        assert int(index) == int(np.argmax(probabilities))
        assert float(score) == pytest.approx(float(np.max(probabilities)), abs=1e-5)


def test_health_metadata_and_config_describe_the_exported_model(
    client: Any, local_triton: LocalTriton, served_spec: ModelSpec
) -> None:
    assert client.is_server_live() and client.is_server_ready()
    for name in (
        served_spec.name,
        served_spec.encoded_name,
        contract.preprocess_model(served_spec.name),
    ):
        assert client.is_model_ready(name), name

    metadata = client.get_model_metadata(served_spec.name, as_json=True)
    (model_input,) = metadata["inputs"]
    (model_output,) = metadata["outputs"]
    assert model_input == {
        "name": served_spec.input_name,
        "datatype": "UINT8",
        "shape": ["-1", *map(str, served_spec.input_shape)],
    }
    assert model_output == {
        "name": served_spec.output_name,
        "datatype": "FP32",
        "shape": ["-1", str(served_spec.num_classes)],
    }
    encoded = client.get_model_metadata(served_spec.encoded_name, as_json=True)
    assert [(i["name"], i["datatype"]) for i in encoded["inputs"]] == [
        (served_spec.encoded_input_name, "BYTES")
    ]

    config = client.get_model_config(served_spec.name, as_json=True)["config"]
    assert config["backend"] == "python"  # configs/local.pbtxt, not the GPU config.pbtxt
    assert int(config["max_batch_size"]) == served_spec.max_batch_size
    assert "dynamic_batching" in config
    assert config["output"][0]["label_filename"] == LABELS_FILENAME


def test_http_health_and_metrics_endpoints_answer(
    local_triton: LocalTriton, served_spec: ModelSpec
) -> None:
    with httpclient.InferenceServerClient(local_triton.http_address) as http:
        assert http.is_server_ready()
        assert http.is_model_ready(served_spec.name)
    with urllib.request.urlopen(local_triton.metrics_url, timeout=10) as response:
        metrics = response.read().decode()
    assert f'nv_inference_count{{model="{served_spec.name}"' in metrics


def _thread_pools_logged(log_text: str, model: str) -> tuple[int, int, int, int]:
    pattern = (
        rf"{re.escape(model)}: (?:TensorFlow|onnxruntime) \S+, intra_op_threads=(\d+), "
        rf"inter_op_threads=(\d+) \((\d+) CPUs, (\d+) instance"
    )
    match = re.search(pattern, log_text)
    assert match, f"no thread-pool line for {model} in the server log"
    intra, inter, cpus, instances = map(int, match.groups())
    return intra, inter, cpus, instances


def test_backend_thread_pools_follow_cpus_and_instances_unless_config_overrides(
    local_triton: LocalTriton, served_spec: ModelSpec, batched_decoder: Any
) -> None:
    log_text = local_triton.log_path.read_text(errors="replace")

    intra, inter, cpus, instances = _thread_pools_logged(log_text, served_spec.name)
    assert cpus == available_cpus()  # Affinity and cgroup quota, as the stub sees them.
    assert (intra, inter) == (max(1, cpus // instances), 1)

    intra, inter, _, _ = _thread_pools_logged(log_text, batched_decoder.name)
    assert (intra, inter) == (batched_decoder.intra_op_threads, 1)
