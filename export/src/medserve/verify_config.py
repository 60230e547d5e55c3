"""Config checks of ``medserve verify``: each ``config.pbtxt`` against its artifact.

Usage::

    detail = check_classifier_config(path, "gpu", spec, read_signature(savedmodel))
    detail = check_classifier_config(path, "onnx-gpu", spec, read_onnx_signature(onnx))
    detail = check_ensemble(ens_dir, model_dir, prep_dir, spec)

Each function returns a one-line description of what it found and raises
:class:`~medserve.errors.VerificationError` naming the file and the field at
the first mismatch. The most common Triton config mistake is a batch dimension
in ``dims`` when ``max_batch_size > 0``; it is reported as such.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tritonclient.grpc import model_config_pb2 as mc

from medserve.errors import VerificationError
from medserve.loaders import SignatureInfo, TensorInfo
from medserve.model_config import (
    ENSEMBLE_PLATFORM,
    LOCAL_KINDS,
    ONNX_BACKEND,
    ONNX_FILE_PARAMETER,
    ONNX_KINDS,
    PILLOW_DECODER_FILENAME,
    PYTHON_BACKEND,
    RUNTIME_PARAMETER,
    RUNTIMES,
    TF_PLATFORM,
    ConfigKind,
    onnx_file,
    parse_config,
    preprocess_name,
)
from medserve.spec import INT8_FILENAME, LABELS_FILENAME, ONNX_FILENAME, ModelSpec
from medserve_client.contract import MAX_PIXELS_PARAMETER

_TF_PLATFORMS = (TF_PLATFORM,)


def check_classifier_config(
    path: Path, kind: ConfigKind, spec: ModelSpec, signature: SignatureInfo
) -> str:
    """Check one classifier config; return a summary line."""
    config = parse_config(path)
    _check_common(config, path, kind, spec.name, spec.max_batch_size)
    if kind in ONNX_KINDS and config.backend != ONNX_BACKEND:
        raise VerificationError(f"{path}: backend must be {ONNX_BACKEND!r}")
    if kind in ONNX_KINDS and config.default_model_filename != onnx_file(kind):
        raise VerificationError(f"{path}: default_model_filename must be {onnx_file(kind)!r}")
    if kind in LOCAL_KINDS:
        _check_local_runtime(config, path, kind)
    _match_signature(config, path, signature)
    image = _single(config.input, path, "input")
    if image.format != mc.ModelInput.FORMAT_NHWC or len(image.dims) != 3:
        raise VerificationError(
            f"{path}: input {image.name!r} must declare format FORMAT_NHWC with 3 dims "
            "(height, width, channels): stock Triton image clients read the layout from it"
        )
    output = _single(config.output, path, "output")
    label_count = _label_count(path.parent if kind == "gpu" else path.parent.parent, output, path)
    if label_count != output.dims[-1]:
        raise VerificationError(
            f"{path}: output {output.name!r} has width {output.dims[-1]} but "
            f"{output.label_filename} has {label_count} labels"
        )
    if not config.HasField("dynamic_batching"):
        raise VerificationError(f"{path}: dynamic_batching is missing")
    policy = config.dynamic_batching.default_queue_policy
    if policy.max_queue_size <= 0 or policy.timeout_action != mc.ModelQueuePolicy.REJECT:
        raise VerificationError(
            f"{path}: dynamic_batching.default_queue_policy must bound max_queue_size "
            "and use timeout_action REJECT"
        )
    if policy.default_timeout_microseconds <= 0:
        raise VerificationError(f"{path}: default_queue_policy.default_timeout_microseconds unset")
    on_gpu = kind in ("gpu", "onnx-gpu")
    _check_instances(config, path, mc.ModelInstanceGroup.KIND_GPU if on_gpu else None)
    _check_warmup(config, path)
    accelerators = config.optimization.execution_accelerators.gpu_execution_accelerator
    if accelerators and not on_gpu:
        raise VerificationError(f"{path}: a GPU accelerator in a {kind} config")
    trt = ""
    if kind == "onnx-gpu":
        trt = " " + _check_onnx_tensorrt(config, path)
    elif any(a.name == "tensorrt" for a in accelerators):
        trt = " TF-TRT FP16,"
    return (
        f"{_where(config)}, {_describe(config)}, labels {label_count},{trt} "
        f"queue <= {policy.max_queue_size}, {len(config.model_warmup)} warmups"
    )


def check_explain_config(
    path: Path, kind: ConfigKind, spec: ModelSpec, signature: SignatureInfo, classifier: Path
) -> str:
    """Check one Grad-CAM model config against its SavedModel and the classifier's config.

    The explain model must batch dynamically with the very queue bounds of
    the classifier's config of the same ``kind`` (``classifier``), so that an
    explanation burst is refused the same way a classification burst is.
    """
    config = parse_config(path)
    _check_common(config, path, kind, spec.explain_name, spec.max_batch_size)
    if kind in LOCAL_KINDS and config.parameters[RUNTIME_PARAMETER].string_value != "tensorflow":
        raise VerificationError(
            f"{path}: the Grad-CAM model has no model.onnx; parameter {RUNTIME_PARAMETER!r} "
            "must be tensorflow"
        )
    _match_signature(config, path, signature)
    if not config.HasField("dynamic_batching"):
        raise VerificationError(f"{path}: dynamic_batching is missing")
    reference = parse_config(classifier)
    mine = config.dynamic_batching.default_queue_policy
    theirs = reference.dynamic_batching.default_queue_policy
    if mine != theirs or (
        config.dynamic_batching.max_queue_delay_microseconds
        != reference.dynamic_batching.max_queue_delay_microseconds
    ):
        raise VerificationError(
            f"{path}: dynamic batching and queue policy must equal the classifier's ({classifier})"
        )
    _check_instances(config, path, mc.ModelInstanceGroup.KIND_GPU if kind == "gpu" else None)
    _check_warmup(config, path)
    return f"{_where(config)}, {_describe(config)}, queue <= {mine.max_queue_size} (as {spec.name})"


def check_preprocess_config(
    path: Path, kind: ConfigKind, spec: ModelSpec, signature: SignatureInfo
) -> str:
    """Check one decoder config; return a summary line."""
    config = parse_config(path)
    _check_common(config, path, kind, preprocess_name(spec), spec.max_batch_size)
    _match_signature(config, path, signature)
    pillow = ""
    if kind in ONNX_KINDS:
        if config.backend != PYTHON_BACKEND or (
            config.default_model_filename != PILLOW_DECODER_FILENAME
        ):
            raise VerificationError(
                f"{path}: the decoder under {kind} must be backend {PYTHON_BACKEND!r} with "
                f"default_model_filename {PILLOW_DECODER_FILENAME!r}"
            )
        pillow = ", Pillow"
    if config.HasField("dynamic_batching"):
        raise VerificationError(
            f"{path}: the decoder must not batch dynamically: one corrupt image would "
            "then fail every request batched with it"
        )
    _check_instances(config, path, mc.ModelInstanceGroup.KIND_CPU)
    cap = config.parameters[MAX_PIXELS_PARAMETER].string_value
    if cap != str(spec.max_pixels):
        raise VerificationError(
            f"{path}: parameter {MAX_PIXELS_PARAMETER!r} is {cap!r} but the decoder graph was "
            f"exported with {spec.max_pixels} (the spec): export the model again"
        )
    return (
        f"{_where(config)}{pillow}, {_describe(config)}, one request per execution, "
        f"max_pixels {spec.max_pixels}"
    )


def _check_local_runtime(config: mc.ModelConfig, path: Path, kind: ConfigKind) -> None:
    """``runtime`` is known; ``local-int8`` runs ``model_int8.onnx``, ``local`` never does."""
    runtime = config.parameters[RUNTIME_PARAMETER].string_value
    if runtime not in RUNTIMES:
        raise VerificationError(
            f"{path}: parameter {RUNTIME_PARAMETER!r} must be one of {', '.join(RUNTIMES)}, "
            f"got {runtime!r}"
        )
    served = config.parameters[ONNX_FILE_PARAMETER].string_value or ONNX_FILENAME
    if kind == "local-int8" and (runtime != "onnxruntime" or served != INT8_FILENAME):
        raise VerificationError(
            f"{path}: the INT8 config must set {RUNTIME_PARAMETER!r} to 'onnxruntime' and "
            f"{ONNX_FILE_PARAMETER!r} to {INT8_FILENAME!r}, got {runtime!r} and {served!r}"
        )
    if kind == "local" and served != ONNX_FILENAME:
        raise VerificationError(
            f"{path}: parameter {ONNX_FILE_PARAMETER!r} is {served!r}; the local config serves "
            f"{ONNX_FILENAME} (INT8 has its own config, local-int8)"
        )


def _check_onnx_tensorrt(config: mc.ModelConfig, path: Path) -> str:
    """TensorRT FP16 with an engine cache and a batch profile, then CUDA."""
    accelerators = list(config.optimization.execution_accelerators.gpu_execution_accelerator)
    if [a.name for a in accelerators] != ["tensorrt", "cuda"]:
        raise VerificationError(
            f"{path}: gpu_execution_accelerator must be tensorrt then cuda (the fallback)"
        )
    params = accelerators[0].parameters
    needed = {"precision_mode": "FP16", "trt_engine_cache_enable": "1"}
    for key, value in needed.items():
        if params.get(key) != value:
            raise VerificationError(f"{path}: tensorrt parameter {key!r} must be {value!r}")
    (image,) = config.input
    shape = "x".join(str(dim) for dim in image.dims)
    ends = {"trt_profile_min_shapes": 1, "trt_profile_max_shapes": config.max_batch_size}
    for key, batch in ends.items():
        if params.get(key) != f"{image.name}:{batch}x{shape}":
            raise VerificationError(
                f"{path}: tensorrt {key} must be {image.name}:{batch}x{shape} (batch 1..max)"
            )
    return f"TensorRT FP16 (engine cache {params.get('trt_engine_cache_path')}) + CUDA,"


def check_ensemble(ens_dir: Path, model_dir: Path, prep_dir: Path, spec: ModelSpec) -> str:
    """Check the ensemble's wiring against the two models' configs; return a summary."""
    path = ens_dir / "config.pbtxt"
    config = parse_config(path)
    if config.name != spec.encoded_name or config.platform != ENSEMBLE_PLATFORM:
        raise VerificationError(
            f"{path}: expected name {spec.encoded_name!r} and platform {ENSEMBLE_PLATFORM!r}, "
            f"got {config.name!r} / {config.platform!r}"
        )
    if not any(child.is_dir() and child.name.isdigit() for child in ens_dir.iterdir()):
        raise VerificationError(f"{ens_dir} needs a numeric version directory (e.g. 1/)")
    members = {
        spec.name: parse_config(model_dir / "config.pbtxt"),
        preprocess_name(spec): parse_config(prep_dir / "config.pbtxt"),
    }
    for name, member in members.items():
        if config.max_batch_size > member.max_batch_size:
            raise VerificationError(
                f"{path}: max_batch_size {config.max_batch_size} exceeds {name}'s "
                f"{member.max_batch_size}"
            )
    # Walk the steps: every tensor a step reads must exist already (an ensemble
    # input or an earlier step's output) with the type and dims the step expects.
    available = _tensors(config.input)
    steps = config.ensemble_scheduling.step
    if [step.model_name for step in steps] != [preprocess_name(spec), spec.name]:
        raise VerificationError(
            f"{path}: steps must run {preprocess_name(spec)} then {spec.name}, got "
            f"{[step.model_name for step in steps]}"
        )
    for step in steps:
        member = members[step.model_name]
        inputs, outputs = _tensors(member.input), _tensors(member.output)
        for model_tensor, ensemble_tensor in step.input_map.items():
            if model_tensor not in inputs:
                raise VerificationError(
                    f"{path}: step {step.model_name} maps {model_tensor!r}, which is not an "
                    f"input of {step.model_name} (inputs: {sorted(inputs)})"
                )
            if available.get(ensemble_tensor) != inputs[model_tensor]:
                raise VerificationError(
                    f"{path}: step {step.model_name} input {model_tensor!r} reads "
                    f"{ensemble_tensor!r}, which is {available.get(ensemble_tensor, 'undefined')}"
                    f", not {inputs[model_tensor]}"
                )
        if set(step.input_map) != set(inputs):
            raise VerificationError(f"{path}: step {step.model_name} leaves inputs unmapped")
        for model_tensor, ensemble_tensor in step.output_map.items():
            if model_tensor not in outputs:
                raise VerificationError(
                    f"{path}: step {step.model_name} maps {model_tensor!r}, which is not an "
                    f"output of {step.model_name} (outputs: {sorted(outputs)})"
                )
            available[ensemble_tensor] = outputs[model_tensor]
    for name, described in _tensors(config.output).items():
        if available.get(name) != described:
            raise VerificationError(
                f"{path}: ensemble output {name!r} is {described} but the steps produce "
                f"{available.get(name, 'nothing by that name')}"
            )
    output = _single(config.output, path, "output")
    if output.label_filename:
        labels = _label_count(ens_dir, output, path)
        if labels != output.dims[-1]:
            raise VerificationError(f"{path}: {labels} labels for an output of {output.dims[-1]}")
    return f"ensemble {_describe(config)} via {' -> '.join(s.model_name for s in steps)}"


def _check_common(
    config: mc.ModelConfig, path: Path, kind: ConfigKind, name: str, max_batch_size: int
) -> None:
    if config.name != name:
        raise VerificationError(f"{path}: name is {config.name!r}, expected {name!r}")
    if kind in LOCAL_KINDS:
        if config.backend != PYTHON_BACKEND:
            raise VerificationError(f"{path}: backend must be {PYTHON_BACKEND!r} (local server)")
    elif kind in ONNX_KINDS:
        if config.platform:
            raise VerificationError(f"{path}: an ONNX config names platform {config.platform!r}")
    elif config.platform not in _TF_PLATFORMS:
        raise VerificationError(
            f"{path}: platform must be {TF_PLATFORM!r}, got {config.platform!r}"
        )
    if config.max_batch_size != max_batch_size:
        raise VerificationError(
            f"{path}: max_batch_size is {config.max_batch_size}, the spec says {max_batch_size}"
        )


def _match_signature(config: mc.ModelConfig, path: Path, signature: SignatureInfo) -> None:
    """Config tensors and SavedModel signature agree on names, types and dims."""
    for role, declared, actual in (
        ("input", config.input, signature.inputs),
        ("output", config.output, signature.outputs),
    ):
        names = {tensor.name for tensor in declared}
        if names != set(actual):
            raise VerificationError(
                f"{path}: config {role}s {sorted(names)} do not match the model "
                f"artifact's {sorted(actual)}"
            )
        for tensor in declared:
            _match_tensor(config, path, role, tensor, actual[tensor.name])


def _match_tensor(
    config: mc.ModelConfig, path: Path, role: str, tensor: Any, actual: TensorInfo
) -> None:
    data_type = mc.DataType.Name(tensor.data_type)
    dims = tuple(tensor.dims)
    name = tensor.name
    if data_type != actual.data_type:
        raise VerificationError(
            f"{path}: {role} {name!r} is {data_type}, the model artifact has {actual.data_type}"
        )
    expected = actual.shape[1:] if config.max_batch_size > 0 else actual.shape
    if dims != expected:
        hint = ""
        if config.max_batch_size > 0 and dims == actual.shape:
            hint = " (with max_batch_size > 0, dims must not include the batch dimension)"
        raise VerificationError(
            f"{path}: {role} {name!r} has dims {list(dims)}, the model artifact "
            f"needs {list(expected)}{hint}"
        )


def _check_instances(config: mc.ModelConfig, path: Path, kind: int | None) -> None:
    want = kind if kind is not None else mc.ModelInstanceGroup.KIND_CPU
    groups = list(config.instance_group)
    if not groups or any(group.kind != want for group in groups):
        raise VerificationError(
            f"{path}: instance_group must be {mc.ModelInstanceGroup.Kind.Name(want)}"
        )


def _check_warmup(config: mc.ModelConfig, path: Path) -> None:
    inputs = _tensors(config.input)
    for warmup in config.model_warmup:
        if not 1 <= warmup.batch_size <= max(config.max_batch_size, 1):
            raise VerificationError(
                f"{path}: model_warmup {warmup.name!r} batch_size {warmup.batch_size} is "
                f"outside 1..{config.max_batch_size}"
            )
        for name, data in warmup.inputs.items():
            described = (mc.DataType.Name(data.data_type), tuple(data.dims))
            if inputs.get(name) != described:
                raise VerificationError(
                    f"{path}: model_warmup {warmup.name!r} input {name!r} is {described}, "
                    f"the config input is {inputs.get(name)}"
                )


def _tensors(tensors: Any) -> dict[str, tuple[str, tuple[int, ...]]]:
    return {t.name: (mc.DataType.Name(t.data_type), tuple(t.dims)) for t in tensors}


def _single(tensors: Any, path: Path, role: str) -> mc.ModelOutput:
    items = list(tensors)
    if len(items) != 1:
        raise VerificationError(f"{path}: expected exactly one {role}, found {len(items)}")
    return items[0]


def _label_count(model_dir: Path, output: mc.ModelOutput, path: Path) -> int:
    if output.label_filename != LABELS_FILENAME:
        raise VerificationError(
            f"{path}: output {output.name!r} needs label_filename: {LABELS_FILENAME!r} "
            "so Triton's classification extension answers with label names"
        )
    labels_path = model_dir / output.label_filename
    try:
        lines = labels_path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise VerificationError(f"cannot read {labels_path}: {exc.strerror}") from exc
    return len(lines)


def _where(config: mc.ModelConfig) -> str:
    engine = config.platform or f"backend {config.backend}"
    kinds = sorted({mc.ModelInstanceGroup.Kind.Name(g.kind) for g in config.instance_group})
    return f"{engine} {'/'.join(kinds)}"


def _describe(config: mc.ModelConfig) -> str:
    def one(t: Any) -> str:
        return f"{t.name} {mc.DataType.Name(t.data_type)} {list(t.dims)}"

    inputs = ", ".join(one(t) for t in config.input)
    outputs = ", ".join(one(t) for t in config.output)
    return f"{inputs} -> {outputs}, max_batch_size {config.max_batch_size}"
