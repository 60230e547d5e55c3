"""Triton ``ModelConfig`` messages for the classifier, the decoder and the ensemble.

Usage::

    options = ServingOptions(max_queue_delay_us=500, tensorrt_fp16=True)
    config = classifier_config(spec, "gpu", options)
    (model_dir / "config.pbtxt").write_text(to_text(config))
    same = parse_config(model_dir / "config.pbtxt")

Every config is a protobuf message (``tritonclient.grpc.model_config_pb2``)
printed with ``text_format``, so a misspelt field fails here, not on the server.

Five deployments share one model, exported twice, and one set of tensor names:

- ``gpu`` (``config.pbtxt``): TensorFlow backend (``tensorflow_savedmodel``) on
  ``KIND_GPU``, optionally with TF-TRT FP16. Triton up to 25.02 only.
- ``cpu`` (``configs/cpu.pbtxt``): the same on ``KIND_CPU``.
- ``onnx-gpu`` (``configs/onnx-gpu.pbtxt``): ``model.onnx`` on the
  ``onnxruntime`` backend, ``KIND_GPU``, TensorRT execution accelerator (FP16,
  engine and timing caches, one optimization profile for batch 1..max) with
  ONNX Runtime's CUDA provider as the fallback for what TensorRT cannot run.
  For current Triton (26.09), which has no TensorFlow backend.
- ``onnx-cpu`` (``configs/onnx-cpu.pbtxt``): ``model.onnx`` on ``onnxruntime``, ``KIND_CPU``.
- ``local`` (``configs/local.pbtxt``): the Python backend on ``KIND_CPU``; its
  ``model.py`` runs the SavedModel with TensorFlow or ``model.onnx`` with
  onnxruntime (config parameter ``runtime``). The local server has neither
  backend, only the Python one.
- ``local-int8`` and ``onnx-cpu-int8``: ``local`` (runtime ``onnxruntime``,
  parameter ``onnx_file``) and ``onnx-cpu`` serving ``model_int8.onnx``, when
  ``medserve export --int8`` wrote it. The decoder and the Grad-CAM model get
  the same config names with their ``local`` / ``onnx-cpu`` content, because
  ``--model-config-name`` applies to every model of the repository.

The decoder (``<name>_preprocess``) is a TensorFlow SavedModel under ``gpu``,
``cpu`` and ``local``; under ``onnx-gpu`` and ``onnx-cpu`` it is a Python-backend
model that decodes with Pillow (``decode_pillow.py``), so a Triton without the
TensorFlow backend serves the encoded path too. It refuses an image whose
header declares more than ``max_pixels`` pixels before decoding it.

With ``max_batch_size > 0`` Triton adds the batch dimension itself, so ``dims``
never include it (``[224, 224, 3]``, not ``[-1, 224, 224, 3]``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from medserve.errors import UsageError, VerificationError
from medserve.spec import INT8_FILENAME, LABELS_FILENAME, ONNX_FILENAME, ModelSpec
from medserve_client.contract import MAX_PIXELS_PARAMETER, preprocess_model

ConfigKind = Literal["gpu", "cpu", "local", "onnx-gpu", "onnx-cpu", "local-int8", "onnx-cpu-int8"]
CONFIG_KINDS: tuple[ConfigKind, ...] = (
    "gpu",
    "cpu",
    "local",
    "onnx-gpu",
    "onnx-cpu",
    "local-int8",
    "onnx-cpu-int8",
)
# The kinds served by Triton's onnxruntime backend (model.onnx or model_int8.onnx).
ONNX_KINDS: tuple[ConfigKind, ...] = ("onnx-gpu", "onnx-cpu", "onnx-cpu-int8")
# The kinds that serve model_int8.onnx, and the kinds on the Python backend.
INT8_KINDS: tuple[ConfigKind, ...] = ("local-int8", "onnx-cpu-int8")
LOCAL_KINDS: tuple[ConfigKind, ...] = ("local", "local-int8")
# Which ONNX file the Python backend's runtime "onnxruntime" loads (model.py's default).
ONNX_FILE_PARAMETER = "onnx_file"
Runtime = Literal["tensorflow", "onnxruntime"]
RUNTIMES: tuple[Runtime, ...] = ("tensorflow", "onnxruntime")
# Which runtime configs/local.pbtxt runs when the version has both artifacts:
# the one measured faster in process here. On the shared 2-core development
# machine (2026-11-28, `python -m medserve_bench.inprocess <v>/model.savedmodel`
# and `<v>/model.onnx`, reference 224x224 CNN, batch 1..16, 2 threads each)
# TensorFlow 2.21 reached 45-49 images/s at its best batch and onnxruntime 1.28
# 27-35, in every run; see the README, "Two runtimes". Re-measured 2026-11-29,
# same commands alternating TF / onnxruntime, three rounds, load average 10-12:
# TensorFlow best 39, 37, 31 images/s, onnxruntime best 29, 26, 22 (TensorFlow
# ahead in every round again; onnxruntime with spinning pool threads was no
# faster). The other runtime stays one parameter away (`medserve tune` tries it).
LOCAL_RUNTIME: Runtime = "tensorflow"
# The batch configs/local.pbtxt forms: each runtime's fastest in-process batch
# on the 2-core development machine (README "Measure", `make bench` limit sweep
# of 2026-11-28: TensorFlow 43 images/s at batch 1, 68 at 4, 60 at 8, 56 at 16;
# onnxruntime's per-image cost keeps falling to batch 8). Larger batches run
# slower per image there, so the local batcher is held at this size.
LOCAL_PREFERRED_BATCH_SIZES: dict[Runtime, tuple[int, ...]] = {
    "tensorflow": (4,),
    "onnxruntime": (8,),
}
# Zero delay is what makes the preferred size bind under load. Triton's dynamic
# batcher (core src/dynamic_batch_scheduler.cc, GetDynamicBatch) forms a
# preferred size only while the oldest request has waited less than the delay;
# past it, it sends everything queued up to max_batch_size. Saturated, every
# queued request is past a 1 ms delay, so the batches were ~8.6 images at 16 in
# flight (bench of 2026-11-28) whatever the preferred sizes said. With 0 the
# batcher sends min(queued, preferred) as soon as the instance is free: batch
# 4.0 at 16 in flight (served probe, 2026-11-29), no added wait at 1 in flight.
LOCAL_MAX_QUEUE_DELAY_US = 0
RUNTIME_PARAMETER = "runtime"
PILLOW_DECODER_FILENAME = "decode_pillow.py"
# The config names the Grad-CAM model (<name>_explain) has: those that run the
# SavedModel with TensorFlow, where its gradient ops live (tf2onnx maps none of
# ReluGrad, MaxPoolGrad, BroadcastGradientArgs: there is no model.onnx of it). A
# deployment under any other config name must leave the explain model out
# (k8s/README.md).
EXPLAIN_CONFIG_KINDS: tuple[ConfigKind, ...] = ("gpu", "cpu", "local", "local-int8")
TF_PLATFORM = "tensorflow_savedmodel"
PYTHON_BACKEND = "python"
ONNX_BACKEND = "onnxruntime"
# Where TensorRT writes its engines and timing cache under onnx-gpu: a
# writable path (the pods' root filesystem is read-only, /tmp is a volume).
DEFAULT_TRT_CACHE_PATH = "/tmp/tensorrt-cache"
ENSEMBLE_PLATFORM = "ensemble"
# Name of the tensor between the two ensemble steps (internal to the ensemble).
ENSEMBLE_IMAGE_TENSOR = "decoded_image"


def config_path(model_dir: Path, kind: ConfigKind) -> Path:
    """Where the config of ``kind`` lives: ``config.pbtxt`` or ``configs/<kind>.pbtxt``."""
    return model_dir / "config.pbtxt" if kind == "gpu" else model_dir / "configs" / f"{kind}.pbtxt"


def config_kinds(*, onnx: bool, int8: bool = False) -> tuple[ConfigKind, ...]:
    """The configs a repository holds: ONNX ones with ``model.onnx``, INT8 ones with both files."""
    return tuple(
        kind
        for kind in CONFIG_KINDS
        if (onnx or kind not in ONNX_KINDS) and ((onnx and int8) or kind not in INT8_KINDS)
    )


def onnx_file(kind: ConfigKind) -> str:
    """The ONNX file a config of ``kind`` serves: ``model_int8.onnx`` or ``model.onnx``."""
    return INT8_FILENAME if kind in INT8_KINDS else ONNX_FILENAME


def fp32_kind(kind: ConfigKind) -> ConfigKind:
    """The FP32 kind an INT8 kind is a variant of (``local-int8`` -> ``local``)."""
    return {"local-int8": "local", "onnx-cpu-int8": "onnx-cpu"}.get(kind, kind)  # type: ignore[return-value]


def preprocess_name(spec: ModelSpec) -> str:
    """Triton model name of the decode-and-resize model (``medcnn_preprocess``)."""
    return preprocess_model(spec.name)


@dataclass(frozen=True, kw_only=True)
class ServingOptions:
    """Batching, queueing and acceleration settings of the classifier configs.

    Attributes:
        max_queue_delay_us: How long the dynamic batcher may hold a request to
            form a larger batch.
        preferred_batch_sizes: Batch sizes the batcher aims for; empty means
            ``max_batch_size // 4``, ``// 2`` and ``max_batch_size``.
        max_queue_size: Requests beyond this many waiting are rejected at once
            (back-pressure instead of unbounded latency).
        queue_timeout_us: A request that waited this long in the queue is
            rejected (clients may ask for a shorter timeout).
        gpu_instances: Model instances per GPU in ``config.pbtxt``.
        cpu_instances: Model instances in the CPU and local configs.
        tensorrt_fp16: Add the TF-TRT FP16 accelerator to ``config.pbtxt``
            (``onnx-gpu`` always runs TensorRT in FP16).
        tensorrt_workspace_bytes: TensorRT ``max_workspace_size_bytes`` (both).
        trt_cache_path: Directory for TensorRT engines and timing cache under
            ``onnx-gpu``; must be writable by the server.
        local_runtime: What ``configs/local.pbtxt`` runs: ``"onnxruntime"``
            (``model.onnx``) or ``"tensorflow"`` (the SavedModel).
        local_preferred_batch_sizes: The local config's preferred batch sizes;
            empty means the runtime's best (:data:`LOCAL_PREFERRED_BATCH_SIZES`).
        local_max_queue_delay_us: The local config's batcher delay (0: take
            what is queued, up to the preferred size, at once).
    """

    max_queue_delay_us: int = 1000
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_size: int = 1024
    queue_timeout_us: int = 5_000_000
    gpu_instances: int = 1
    cpu_instances: int = 1
    tensorrt_fp16: bool = False
    tensorrt_workspace_bytes: int = 1 << 30
    trt_cache_path: str = DEFAULT_TRT_CACHE_PATH
    local_runtime: Runtime = LOCAL_RUNTIME
    local_preferred_batch_sizes: tuple[int, ...] = ()
    local_max_queue_delay_us: int = LOCAL_MAX_QUEUE_DELAY_US

    def __post_init__(self) -> None:
        if self.local_runtime not in RUNTIMES:
            raise UsageError(
                f"local_runtime must be one of {', '.join(RUNTIMES)}, got {self.local_runtime!r}"
            )
        if not self.trt_cache_path.startswith("/"):
            raise UsageError(f"trt_cache_path must be absolute, got {self.trt_cache_path!r}")
        for name in ("max_queue_delay_us", "local_max_queue_delay_us"):
            if not 0 <= getattr(self, name) <= 10_000_000:
                raise UsageError(f"{name} must be in 0..10000000, got {getattr(self, name)}")
        if self.max_queue_size < 1:
            raise UsageError(f"max_queue_size must be at least 1, got {self.max_queue_size}")
        if self.queue_timeout_us < 1:
            raise UsageError(f"queue_timeout_us must be positive, got {self.queue_timeout_us}")
        if self.gpu_instances < 1 or self.cpu_instances < 1:
            raise UsageError("gpu_instances and cpu_instances must be at least 1")
        for sizes in (self.preferred_batch_sizes, self.local_preferred_batch_sizes):
            if any(size < 1 for size in sizes):
                raise UsageError(f"preferred batch sizes must be positive: {sizes}")

    def batch_sizes_for(self, max_batch_size: int) -> list[int]:
        """The preferred batch sizes to write for ``max_batch_size``."""
        if self.preferred_batch_sizes:
            return _within(self.preferred_batch_sizes, max_batch_size)
        return sorted(
            {size for size in (max_batch_size // 4, max_batch_size // 2) if size > 0}
            | {max_batch_size}
        )

    def local_batching(self, max_batch_size: int) -> tuple[list[int], int]:
        """``(preferred batch sizes, queue delay in us)`` of ``configs/local.pbtxt``."""
        if self.local_preferred_batch_sizes:
            return _within(self.local_preferred_batch_sizes, max_batch_size), (
                self.local_max_queue_delay_us
            )
        best = LOCAL_PREFERRED_BATCH_SIZES[self.local_runtime]
        # A model exported with a smaller max batch is held at its max instead.
        sizes = sorted({min(size, max_batch_size) for size in best})
        return sizes, self.local_max_queue_delay_us


def _within(sizes: tuple[int, ...], max_batch_size: int) -> list[int]:
    too_big = [size for size in sizes if size > max_batch_size]
    if too_big:
        raise UsageError(f"preferred batch sizes {too_big} exceed max_batch_size {max_batch_size}")
    return sorted(set(sizes))


def classifier_config(
    spec: ModelSpec, kind: ConfigKind, options: ServingOptions | None = None
) -> mc.ModelConfig:
    """Build the classifier's config for one deployment ``kind``.

    Args:
        spec: Tensor names, input size, labels and ``max_batch_size``.
        kind: One of :data:`CONFIG_KINDS`.
        options: Batching and acceleration settings (defaults when ``None``).
    """
    options = options or ServingOptions()
    config = _base_config(spec.name, kind, spec.max_batch_size)
    if kind in ONNX_KINDS:
        config.backend = ONNX_BACKEND
        config.default_model_filename = onnx_file(kind)
    elif kind == "local":
        config.parameters[RUNTIME_PARAMETER].string_value = options.local_runtime
    elif kind == "local-int8":
        config.parameters[RUNTIME_PARAMETER].string_value = "onnxruntime"
        config.parameters[ONNX_FILE_PARAMETER].string_value = onnx_file(kind)
    # The layout, declared: Triton's stock image clients (NVIDIA's image_client.py)
    # read it from the config to know the input is HWC, and refuse a model without.
    config.input.add(
        name=spec.input_name,
        data_type=mc.TYPE_UINT8,
        format=mc.ModelInput.FORMAT_NHWC,
        dims=list(spec.input_shape),
    )
    config.output.add(
        name=spec.output_name,
        data_type=mc.TYPE_FP32,
        dims=[spec.num_classes],
        label_filename=LABELS_FILENAME,
    )
    batching = config.dynamic_batching
    if kind in LOCAL_KINDS:
        # local-int8 runs onnxruntime whatever local runs: batch as onnxruntime does.
        runtime = "onnxruntime" if kind == "local-int8" else options.local_runtime
        local = replace(options, local_runtime=runtime)
        preferred, delay_us = local.local_batching(spec.max_batch_size)
    else:
        preferred = options.batch_sizes_for(spec.max_batch_size)
        delay_us = options.max_queue_delay_us
    batching.max_queue_delay_microseconds = delay_us
    batching.preferred_batch_size.extend(preferred)
    policy = batching.default_queue_policy
    policy.max_queue_size = options.max_queue_size
    policy.timeout_action = mc.ModelQueuePolicy.REJECT
    policy.default_timeout_microseconds = options.queue_timeout_us
    policy.allow_timeout_override = True
    if kind in ("gpu", "onnx-gpu"):
        config.instance_group.add(kind=mc.ModelInstanceGroup.KIND_GPU, count=options.gpu_instances)
    else:
        config.instance_group.add(kind=mc.ModelInstanceGroup.KIND_CPU, count=options.cpu_instances)
    # Warm-up runs zero images through every instance before the model reports
    # ready: the first real request is not slow and TF-TRT builds its engines
    # for both ends of the batch range.
    for batch_size in sorted({1, spec.max_batch_size}):
        warmup = config.model_warmup.add(name=f"zeros_batch_{batch_size}", batch_size=batch_size)
        warmup.inputs[spec.input_name].data_type = mc.TYPE_UINT8
        warmup.inputs[spec.input_name].dims.extend(spec.input_shape)
        warmup.inputs[spec.input_name].zero_data = True
    if kind == "gpu" and options.tensorrt_fp16:
        accelerator = config.optimization.execution_accelerators.gpu_execution_accelerator.add(
            name="tensorrt"
        )
        accelerator.parameters["precision_mode"] = "FP16"
        accelerator.parameters["max_workspace_size_bytes"] = str(options.tensorrt_workspace_bytes)
    if kind == "onnx-gpu":
        _add_onnx_tensorrt(config, spec, options)
    return config


def _add_onnx_tensorrt(config: mc.ModelConfig, spec: ModelSpec, options: ServingOptions) -> None:
    """TensorRT first, ONNX Runtime's CUDA provider as the fallback.

    Parameter names are those of Triton's onnxruntime backend
    (onnxruntime_backend README, "ONNX Runtime with TensorRT optimization",
    and ``src/onnxruntime.cc``, which rejects unknown keys). The backend
    always appends the CUDA provider after TensorRT; the explicit ``cuda``
    entry says so in the config. One optimization profile covers batch 1 to
    ``max_batch_size`` (a dynamic batch needs one, onnxruntime #17434); the
    warm-up at both ends builds the engine before the model reports ready,
    and the engine cache keeps it for the next start of the pod.
    """
    accelerators = config.optimization.execution_accelerators.gpu_execution_accelerator
    trt = accelerators.add(name="tensorrt")
    shape = "x".join(str(dim) for dim in spec.input_shape)
    sizes = options.batch_sizes_for(spec.max_batch_size)
    profile = {
        "trt_profile_min_shapes": 1,
        "trt_profile_opt_shapes": sizes[len(sizes) // 2],
        "trt_profile_max_shapes": spec.max_batch_size,
    }
    trt.parameters["precision_mode"] = "FP16"
    trt.parameters["max_workspace_size_bytes"] = str(options.tensorrt_workspace_bytes)
    trt.parameters["trt_engine_cache_enable"] = "1"
    trt.parameters["trt_engine_cache_path"] = options.trt_cache_path
    trt.parameters["trt_timing_cache_enable"] = "1"
    trt.parameters["trt_timing_cache_path"] = options.trt_cache_path
    for key, batch in profile.items():
        trt.parameters[key] = f"{spec.input_name}:{batch}x{shape}"
    accelerators.add(name="cuda")


def explain_config(
    spec: ModelSpec, kind: ConfigKind, options: ServingOptions | None = None
) -> mc.ModelConfig:
    """Build the Grad-CAM model's (``<name>_explain``) config for one deployment ``kind``.

    The classifier's config with the same dynamic batching, queue bounds and
    instances, plus the ``class_index`` input (INT32 ``[1]``, ``-1`` for the
    predicted class) and the ``heatmap`` output (FP32 ``[H, W]``). No TF-TRT:
    the graph holds gradient ops, and explanations are a low-volume path.
    One warm-up at batch 1 (class 0, zeros) builds the graph before ready.
    Its ``local`` config runs TensorFlow whatever the classifier's runs: the
    explain model has no ``model.onnx``.
    """
    if kind not in EXPLAIN_CONFIG_KINDS:
        raise UsageError(
            f"the explain model has no {kind!r} config: it runs with TensorFlow only "
            f"({', '.join(EXPLAIN_CONFIG_KINDS)})"
        )
    options = options or ServingOptions()
    # Explanations are not quantized: under local-int8 Grad-CAM runs as under local.
    config = classifier_config(
        spec, fp32_kind(kind), replace(options, tensorrt_fp16=False, local_runtime="tensorflow")
    )
    config.name = spec.explain_name
    config.input.add(name=spec.class_index_name, data_type=mc.TYPE_INT32, dims=[1])
    config.output.add(name=spec.heatmap_name, data_type=mc.TYPE_FP32, dims=list(spec.image_size))
    del config.model_warmup[:]
    warmup = config.model_warmup.add(name="zeros_batch_1", batch_size=1)
    for name, data_type, dims in (
        (spec.input_name, mc.TYPE_UINT8, spec.input_shape),
        (spec.class_index_name, mc.TYPE_INT32, (1,)),
    ):
        warmup.inputs[name].data_type = data_type
        warmup.inputs[name].dims.extend(dims)
        warmup.inputs[name].zero_data = True
    return config


def preprocess_config(
    spec: ModelSpec, kind: ConfigKind, options: ServingOptions | None = None
) -> mc.ModelConfig:
    """Build the decode-and-resize model's config for one deployment ``kind``.

    No dynamic batching on purpose: Triton then runs each request on its own,
    so one corrupt image fails only the request that carried it. It runs on
    CPU instances in every deployment because image decoding is CPU work in
    TensorFlow anyway. No warm-up: zero bytes are not a decodable image.
    Under the ONNX kinds it is the Pillow decoder on the Python backend (the
    Triton images that run ONNX have no TensorFlow backend), which reads the
    pixel cap from the same ``max_pixels`` parameter.
    """
    options = options or ServingOptions()
    config = _base_config(preprocess_name(spec), kind, spec.max_batch_size)
    if kind in ONNX_KINDS:
        config.backend = PYTHON_BACKEND
        config.default_model_filename = PILLOW_DECODER_FILENAME
    config.input.add(name=spec.encoded_input_name, data_type=mc.TYPE_STRING, dims=[1])
    config.output.add(name=spec.input_name, data_type=mc.TYPE_UINT8, dims=list(spec.input_shape))
    config.instance_group.add(
        kind=mc.ModelInstanceGroup.KIND_CPU, count=max(options.cpu_instances, 1)
    )
    # The pixel cap is baked into the decoder graph at export (the TF backend
    # passes no parameters to a signature); recorded here so every decoder of
    # the repository and `medserve verify` read the one value.
    config.parameters[MAX_PIXELS_PARAMETER].string_value = str(spec.max_pixels)
    return config


def ensemble_config(spec: ModelSpec) -> mc.ModelConfig:
    """Build the ``<name>_encoded`` ensemble: encoded bytes -> decoder -> classifier.

    The same config serves every deployment (an ensemble has no backend); its
    output carries the labels so Triton's classification extension works on
    the encoded entry point too.
    """
    config = mc.ModelConfig(
        name=spec.encoded_name, platform=ENSEMBLE_PLATFORM, max_batch_size=spec.max_batch_size
    )
    config.input.add(name=spec.encoded_input_name, data_type=mc.TYPE_STRING, dims=[1])
    config.output.add(
        name=spec.output_name,
        data_type=mc.TYPE_FP32,
        dims=[spec.num_classes],
        label_filename=LABELS_FILENAME,
    )
    decode = config.ensemble_scheduling.step.add(model_name=preprocess_name(spec), model_version=-1)
    decode.input_map[spec.encoded_input_name] = spec.encoded_input_name
    decode.output_map[spec.input_name] = ENSEMBLE_IMAGE_TENSOR
    classify = config.ensemble_scheduling.step.add(model_name=spec.name, model_version=-1)
    classify.input_map[spec.input_name] = ENSEMBLE_IMAGE_TENSOR
    classify.output_map[spec.output_name] = spec.output_name
    return config


def to_text(config: mc.ModelConfig) -> str:
    """Print ``config`` in protobuf text format, as ``config.pbtxt`` expects."""
    return text_format.MessageToString(config)


def parse_config(path: Path) -> mc.ModelConfig:
    """Parse a ``config.pbtxt``-style file into a ``ModelConfig``.

    Raises:
        VerificationError: The file is missing or is not a valid ``ModelConfig``.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise VerificationError(f"cannot read model config {path}: {exc.strerror}") from exc
    try:
        return text_format.Parse(text, mc.ModelConfig())
    except text_format.ParseError as exc:
        raise VerificationError(f"{path} is not a valid Triton ModelConfig: {exc}") from exc


def _base_config(name: str, kind: ConfigKind, max_batch_size: int) -> mc.ModelConfig:
    """Name, platform or backend, batch size and version policy shared by all."""
    if kind not in CONFIG_KINDS:
        raise UsageError(f"config kind must be one of {', '.join(CONFIG_KINDS)}, got {kind!r}")
    config = mc.ModelConfig(name=name, max_batch_size=max_batch_size)
    if kind in LOCAL_KINDS:
        config.backend = PYTHON_BACKEND
    elif kind not in ONNX_KINDS:  # The callers set the ONNX kinds' backends.
        config.platform = TF_PLATFORM
    # Serve only the newest version: an export rolls the model forward and the
    # previous version directory stays on disk for a quick rollback.
    config.version_policy.latest.num_versions = 1
    return config
