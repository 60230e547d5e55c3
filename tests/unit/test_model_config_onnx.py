"""Specs of the ONNX configs: onnxruntime + TensorRT on GPU, onnxruntime on CPU, Pillow decoder."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from medserve.errors import UsageError
from medserve.model_config import (
    CONFIG_KINDS,
    ServingOptions,
    classifier_config,
    config_kinds,
    config_path,
    preprocess_config,
    to_text,
)
from medserve.spec import ModelSpec

SPEC = ModelSpec(name="medcnn", labels=("normal", "lesion"), image_size=(224, 192))


def _roundtrip(config: mc.ModelConfig) -> mc.ModelConfig:
    return text_format.Parse(to_text(config), mc.ModelConfig())


def test_onnx_configs_live_in_configs_named_for_model_config_name() -> None:
    model_dir = Path("model_repository") / "medcnn"
    assert config_path(model_dir, "onnx-gpu") == model_dir / "configs" / "onnx-gpu.pbtxt"
    assert config_path(model_dir, "onnx-cpu") == model_dir / "configs" / "onnx-cpu.pbtxt"
    assert config_kinds(onnx=True, int8=True) == CONFIG_KINDS
    assert config_kinds(onnx=True) == ("gpu", "cpu", "local", "onnx-gpu", "onnx-cpu")
    assert config_kinds(onnx=False) == ("gpu", "cpu", "local")
    # INT8 quantizes model.onnx: no INT8 config without it.
    assert config_kinds(onnx=False, int8=True) == ("gpu", "cpu", "local")


def test_onnx_gpu_config_runs_model_onnx_on_onnxruntime_with_tensorrt_fp16_then_cuda() -> None:
    options = ServingOptions(tensorrt_workspace_bytes=1 << 28, trt_cache_path="/cache/trt")
    config = _roundtrip(classifier_config(SPEC, "onnx-gpu", options))
    assert (config.backend, config.platform) == ("onnxruntime", "")
    assert config.default_model_filename == "model.onnx"
    assert [g.kind for g in config.instance_group] == [mc.ModelInstanceGroup.KIND_GPU]
    trt, cuda = config.optimization.execution_accelerators.gpu_execution_accelerator
    assert (trt.name, cuda.name) == ("tensorrt", "cuda")
    assert dict(trt.parameters) == {
        "precision_mode": "FP16",
        "max_workspace_size_bytes": str(1 << 28),
        "trt_engine_cache_enable": "1",
        "trt_engine_cache_path": "/cache/trt",
        "trt_timing_cache_enable": "1",
        "trt_timing_cache_path": "/cache/trt",
        "trt_profile_min_shapes": "image:1x224x192x3",
        "trt_profile_opt_shapes": "image:32x224x192x3",
        "trt_profile_max_shapes": "image:64x224x192x3",
    }


def test_onnx_configs_keep_the_tensors_batching_warmup_and_labels_of_the_tf_configs() -> None:
    gpu = _roundtrip(classifier_config(SPEC, "gpu"))
    for kind in ("onnx-gpu", "onnx-cpu"):
        onnx = _roundtrip(classifier_config(SPEC, kind))
        assert onnx.input == gpu.input and onnx.output == gpu.output
        assert onnx.dynamic_batching == gpu.dynamic_batching
        assert onnx.model_warmup == gpu.model_warmup
        assert onnx.max_batch_size == gpu.max_batch_size
        assert onnx.version_policy == gpu.version_policy


def test_onnx_cpu_config_has_no_gpu_accelerator_and_runs_on_kind_cpu() -> None:
    config = _roundtrip(classifier_config(SPEC, "onnx-cpu", ServingOptions(tensorrt_fp16=True)))
    assert config.backend == "onnxruntime"
    assert [g.kind for g in config.instance_group] == [mc.ModelInstanceGroup.KIND_CPU]
    assert not config.HasField("optimization")


@pytest.mark.parametrize("runtime", ["tensorflow", "onnxruntime"])
def test_local_config_names_its_runtime_as_a_parameter(runtime: str) -> None:
    options = ServingOptions(local_runtime=runtime)  # type: ignore[arg-type]
    config = _roundtrip(classifier_config(SPEC, "local", options))
    assert config.backend == "python"
    assert config.parameters["runtime"].string_value == runtime


def test_decoder_under_onnx_configs_is_the_pillow_python_model_with_a_pixel_cap() -> None:
    for kind in ("onnx-gpu", "onnx-cpu"):
        spec = ModelSpec(labels=("a", "b"), image_size=(224, 192), max_pixels=100_000)
        config = _roundtrip(preprocess_config(spec, kind))
        assert (config.backend, config.default_model_filename) == ("python", "decode_pillow.py")
        assert config.parameters["max_pixels"].string_value == "100000"
        assert [g.kind for g in config.instance_group] == [mc.ModelInstanceGroup.KIND_CPU]
        assert not config.HasField("dynamic_batching")
        tf = _roundtrip(preprocess_config(spec, "cpu"))
        assert config.input == tf.input and config.output == tf.output


@pytest.mark.parametrize(
    "kwargs",
    [{"local_runtime": "torch"}, {"trt_cache_path": "relative/dir"}],
)
def test_new_serving_options_reject_bad_values_as_usage_errors(kwargs: dict[str, object]) -> None:
    with pytest.raises(UsageError):
        ServingOptions(**kwargs)  # type: ignore[arg-type]


def test_explain_model_has_no_onnx_config_and_says_why() -> None:
    from medserve.model_config import explain_config

    for kind in ("onnx-gpu", "onnx-cpu"):
        with pytest.raises(UsageError, match="runs with TensorFlow only"):
            explain_config(SPEC, kind)


def test_explain_model_runs_tensorflow_locally_whatever_the_classifier_runs() -> None:
    from medserve.model_config import explain_config

    options = ServingOptions(local_runtime="onnxruntime")
    config = _roundtrip(explain_config(SPEC, "local", options))
    assert config.parameters["runtime"].string_value == "tensorflow"
