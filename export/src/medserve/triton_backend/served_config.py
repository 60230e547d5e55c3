"""What one Python-backend model serves, read from the config Triton passes.

Usage::

    served = ServedConfig.from_json(args["model_config"], args.get("model_name"))
    served.inputs          # [("image", "TYPE_UINT8")]
    served.runtime         # "tensorflow" or "onnxruntime"

Tensor names and data types come from the model config (never hard-coded), so
the same code serves the classifier (``image`` UINT8 -> ``probabilities`` FP32)
and the preprocessing model (``image_bytes`` STRING -> ``image`` UINT8).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

SAVEDMODEL_DIRNAME = "model.savedmodel"
ONNX_FILENAME = "model.onnx"
SIGNATURE_NAME = "serving_default"
RUNTIME_PARAMETER = "runtime"
RUNTIMES = ("tensorflow", "onnxruntime")
# Which ONNX file `runtime: onnxruntime` opens (e.g. model_int8.onnx).
ONNX_FILE_PARAMETER = "onnx_file"

# Triton config data types -> numpy dtypes (TensorFlow names match numpy's, but
# strings are tf.string and numpy objects).
TRITON_TO_NUMPY: dict[str, type[Any]] = {
    "TYPE_BOOL": np.bool_,
    "TYPE_UINT8": np.uint8,
    "TYPE_UINT16": np.uint16,
    "TYPE_UINT32": np.uint32,
    "TYPE_UINT64": np.uint64,
    "TYPE_INT8": np.int8,
    "TYPE_INT16": np.int16,
    "TYPE_INT32": np.int32,
    "TYPE_INT64": np.int64,
    "TYPE_FP16": np.float16,
    "TYPE_FP32": np.float32,
    "TYPE_FP64": np.float64,
    "TYPE_STRING": np.object_,
}


def dtype_name(data_type: str) -> str | None:
    """The runtime-side name of a Triton data type (``"uint8"``, ``"string"``), if known."""
    numpy_type = TRITON_TO_NUMPY.get(data_type)
    if numpy_type is None:
        return None
    return "string" if numpy_type is np.object_ else np.dtype(numpy_type).name


@dataclass(frozen=True)
class ServedConfig:
    """The parts of a model config the backend acts on.

    Attributes:
        model_config: The whole config as Triton passed it (parsed JSON).
        model_name: The model's name, for messages and logs.
        max_batch_size: ``0`` means the config has no batch axis.
        inputs: ``(name, data_type)`` of every input, in config order.
        outputs: ``(name, data_type, dims)`` of every output.
        runtime: ``"tensorflow"`` or ``"onnxruntime"``.
        onnx_file: The ONNX file name ``runtime: onnxruntime`` loads.
        hint: Appended to a failed request's message (what the input must hold).
    """

    model_config: dict[str, Any]
    model_name: str
    max_batch_size: int
    inputs: tuple[tuple[str, str], ...]
    outputs: tuple[tuple[str, str, tuple[int, ...]], ...]
    runtime: str
    onnx_file: str
    hint: str

    @classmethod
    def from_json(cls, text: str, model_name: str | None = None) -> ServedConfig:
        """Parse Triton's JSON config.

        Raises:
            ValueError: No inputs or outputs, an unknown ``runtime``, or an
                ``onnx_file`` that is not a plain file name.
        """
        config: dict[str, Any] = json.loads(text)
        name = model_name or config.get("name", "model")
        inputs = tuple((item["name"], item["data_type"]) for item in config.get("input", []))
        outputs = tuple(
            (item["name"], item["data_type"], tuple(int(d) for d in item.get("dims", [])))
            for item in config.get("output", [])
        )
        if not inputs or not outputs:
            raise ValueError(f"model {name}: config declares no inputs or no outputs")
        # A failure on encoded bytes is almost always a file that is not an image.
        encoded = [tensor for tensor, data_type in inputs if data_type == "TYPE_STRING"]
        hint = (
            f"; input {encoded[0]!r} must hold the bytes of a PNG or JPEG file" if encoded else ""
        )
        parameters = config.get("parameters") or {}
        runtime = parameters.get(RUNTIME_PARAMETER, {}).get("string_value") or "tensorflow"
        if runtime not in RUNTIMES:
            raise ValueError(
                f"model {name}: config parameter {RUNTIME_PARAMETER!r} must be one "
                f"of {', '.join(RUNTIMES)}, got {runtime!r}"
            )
        onnx_file = parameters.get(ONNX_FILE_PARAMETER, {}).get("string_value") or ONNX_FILENAME
        if "/" in onnx_file or onnx_file in (".", ".."):
            raise ValueError(
                f"model {name}: config parameter {ONNX_FILE_PARAMETER!r} must name a file in "
                f"the version directory, got {onnx_file!r}"
            )
        return cls(
            model_config=config,
            model_name=name,
            max_batch_size=int(config.get("max_batch_size", 0)),
            inputs=inputs,
            outputs=outputs,
            runtime=runtime,
            onnx_file=onnx_file,
            hint=hint,
        )

    def check_dtype(self, kind: str, name: str, data_type: str, runtime_dtype: str) -> None:
        """Refuse a tensor whose config type and runtime type differ.

        Raises:
            ValueError: Naming the tensor, the config type and the runtime's.
        """
        if dtype_name(data_type) != runtime_dtype:
            raise ValueError(
                f"model {self.model_name}: config {kind} {name!r} is {data_type} but the "
                f"{self.runtime} model has {runtime_dtype or 'another type'}"
            )
