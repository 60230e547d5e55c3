"""Specs of the ModelConfig builders: parse back, dims rules, batching, labels, TF-TRT."""

from __future__ import annotations

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from medserve.errors import UsageError
from medserve.model_config import (
    ServingOptions,
    classifier_config,
    ensemble_config,
    preprocess_config,
    to_text,
)
from medserve.spec import ModelSpec

SPEC = ModelSpec(name="medcnn", labels=("normal", "lesion", "other"), image_size=(224, 192))


def _roundtrip(config: mc.ModelConfig) -> mc.ModelConfig:
    return text_format.Parse(to_text(config), mc.ModelConfig())


@pytest.mark.parametrize("kind", ["gpu", "cpu", "local", "onnx-gpu", "onnx-cpu"])
def test_classifier_config_parses_back_to_the_same_message(kind: str) -> None:
    config = classifier_config(SPEC, kind)  # type: ignore[arg-type]
    assert _roundtrip(config) == config
    assert config.name == "medcnn"


def test_gpu_config_uses_the_tensorflow_savedmodel_platform_on_gpu() -> None:
    config = _roundtrip(classifier_config(SPEC, "gpu"))
    assert config.platform == "tensorflow_savedmodel"
    assert [g.kind for g in config.instance_group] == [mc.ModelInstanceGroup.KIND_GPU]
    assert config.version_policy.latest.num_versions == 1


def test_cpu_config_is_the_tf_backend_on_kind_cpu() -> None:
    config = _roundtrip(classifier_config(SPEC, "cpu"))
    assert config.platform == "tensorflow_savedmodel"
    assert [g.kind for g in config.instance_group] == [mc.ModelInstanceGroup.KIND_CPU]


def test_local_config_is_the_python_backend_with_the_same_tensors_and_queue_policy() -> None:
    local = _roundtrip(classifier_config(SPEC, "local"))
    gpu = _roundtrip(classifier_config(SPEC, "gpu"))
    assert local.backend == "python" and not local.platform
    assert [g.kind for g in local.instance_group] == [mc.ModelInstanceGroup.KIND_CPU]
    assert local.input == gpu.input and local.output == gpu.output
    # The batch sizes and delay are the local runtime's own (test_local_config.py).
    assert local.dynamic_batching.default_queue_policy == gpu.dynamic_batching.default_queue_policy
    assert local.max_batch_size == gpu.max_batch_size
    assert local.model_warmup == gpu.model_warmup


def test_dims_exclude_the_batch_dimension_and_name_the_tensors() -> None:
    config = _roundtrip(classifier_config(SPEC, "gpu"))
    (image,) = config.input
    (probabilities,) = config.output
    assert config.max_batch_size == 64
    assert (image.name, image.data_type) == ("image", mc.TYPE_UINT8)
    assert list(image.dims) == [224, 192, 3]
    assert (probabilities.name, probabilities.data_type, list(probabilities.dims)) == (
        "probabilities",
        mc.TYPE_FP32,
        [3],
    )


def test_output_names_the_labels_file_for_the_classification_extension() -> None:
    assert _roundtrip(classifier_config(SPEC, "cpu")).output[0].label_filename == "labels.txt"


def test_dynamic_batching_bounds_the_queue_and_rejects_what_waits_too_long() -> None:
    options = ServingOptions(max_queue_delay_us=250, max_queue_size=99, queue_timeout_us=7000)
    batching = _roundtrip(classifier_config(SPEC, "gpu", options)).dynamic_batching
    assert batching.max_queue_delay_microseconds == 250
    assert list(batching.preferred_batch_size) == [16, 32, 64]
    policy = batching.default_queue_policy
    assert policy.max_queue_size == 99
    assert policy.timeout_action == mc.ModelQueuePolicy.REJECT
    assert policy.default_timeout_microseconds == 7000


def test_warmup_sends_zeros_at_batch_one_and_at_the_max_batch_size() -> None:
    warmups = _roundtrip(classifier_config(SPEC, "gpu")).model_warmup
    assert [w.batch_size for w in warmups] == [1, 64]
    for warmup in warmups:
        data = warmup.inputs["image"]
        assert data.zero_data and data.data_type == mc.TYPE_UINT8
        assert list(data.dims) == [224, 192, 3]


def test_tensorrt_fp16_appears_only_when_asked_and_only_on_gpu() -> None:
    options = ServingOptions(tensorrt_fp16=True, tensorrt_workspace_bytes=1 << 28)
    plain = classifier_config(SPEC, "gpu")
    assert not plain.HasField("optimization")
    (accelerator,) = _roundtrip(
        classifier_config(SPEC, "gpu", options)
    ).optimization.execution_accelerators.gpu_execution_accelerator
    assert accelerator.name == "tensorrt"
    assert dict(accelerator.parameters) == {
        "precision_mode": "FP16",
        "max_workspace_size_bytes": str(1 << 28),
    }
    for kind in ("cpu", "local", "onnx-cpu"):
        assert not classifier_config(SPEC, kind, options).HasField("optimization")


def test_preprocess_config_takes_bytes_returns_the_served_image_and_does_not_batch() -> None:
    config = _roundtrip(preprocess_config(SPEC, "gpu"))
    assert config.name == "medcnn_preprocess"
    assert config.max_batch_size == 64
    assert (config.input[0].name, config.input[0].data_type, list(config.input[0].dims)) == (
        "image_bytes",
        mc.TYPE_STRING,
        [1],
    )
    assert list(config.output[0].dims) == [224, 192, 3]
    assert not config.HasField("dynamic_batching")
    assert _roundtrip(preprocess_config(SPEC, "local")).backend == "python"


def test_ensemble_feeds_the_decoder_output_into_the_classifier() -> None:
    config = _roundtrip(ensemble_config(SPEC))
    assert (config.name, config.platform) == ("medcnn_encoded", "ensemble")
    first, second = config.ensemble_scheduling.step
    assert first.model_name == "medcnn_preprocess"
    assert dict(first.input_map) == {"image_bytes": "image_bytes"}
    assert second.model_name == "medcnn"
    assert dict(second.input_map) == {"image": first.output_map["image"]}
    assert dict(second.output_map) == {"probabilities": "probabilities"}
    assert config.output[0].label_filename == "labels.txt"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_queue_delay_us": -1},
        {"max_queue_size": 0},
        {"queue_timeout_us": 0},
        {"preferred_batch_sizes": (0, 4)},
    ],
)
def test_serving_options_reject_bad_values_as_usage_errors(kwargs: dict[str, int]) -> None:
    with pytest.raises(UsageError):
        ServingOptions(**kwargs)  # type: ignore[arg-type]


def test_preferred_batch_sizes_above_the_max_batch_size_are_a_usage_error() -> None:
    with pytest.raises(UsageError, match="exceed max_batch_size"):
        classifier_config(SPEC, "gpu", ServingOptions(preferred_batch_sizes=(128,)))


def test_max_batch_size_one_writes_one_warmup_and_one_preferred_size() -> None:
    spec = ModelSpec(labels=("a", "b"), image_size=(32, 32), max_batch_size=1)
    config = classifier_config(spec, "cpu")
    assert [w.batch_size for w in config.model_warmup] == [1]
    assert list(config.dynamic_batching.preferred_batch_size) == [1]


@pytest.mark.parametrize("kind", ["gpu", "cpu", "local"])
def test_classifier_input_declares_the_nhwc_layout_stock_image_clients_read(kind: str) -> None:
    # NVIDIA's image_client.py refuses a model whose single input has neither
    # FORMAT_NHWC nor FORMAT_NCHW, and takes H, W, C from the dims by that layout.
    config = _roundtrip(classifier_config(SPEC, kind))  # type: ignore[arg-type]
    (image,) = config.input
    assert image.format == mc.ModelInput.FORMAT_NHWC
    assert list(image.dims) == [224, 192, 3]
    assert "format: FORMAT_NHWC" in to_text(config)


@pytest.mark.parametrize("kind", ["gpu", "cpu", "local"])
def test_every_decoder_config_records_the_pixel_cap_baked_into_its_graph(kind: str) -> None:
    spec = ModelSpec(labels=("a", "b"), image_size=(32, 32), max_pixels=12_345_678)
    config = _roundtrip(preprocess_config(spec, kind))  # type: ignore[arg-type]
    assert config.parameters["max_pixels"].string_value == "12345678"


def test_max_pixels_below_the_served_image_or_above_2_31_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="max_pixels"):
        ModelSpec(labels=("a", "b"), image_size=(32, 32), max_pixels=32 * 32 - 1)
    with pytest.raises(UsageError, match="max_pixels"):
        ModelSpec(labels=("a", "b"), image_size=(32, 32), max_pixels=2**31)
