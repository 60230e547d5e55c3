"""Read and run ``model.onnx`` the way Triton's onnxruntime backend does.

Usage::

    signature = read_onnx_signature(path)          # names, Triton dtypes, dims
    opset = onnx_opset(path)                       # the default-domain opset
    outputs = run_onnx(path, {"image": batch})     # onnxruntime, CPU provider
    probabilities = run_onnx_batched(path, "image", images, "probabilities")  # many images

Errors are :class:`~medserve.errors.VerificationError` naming the file, so
``medserve verify`` reports a truncated, tampered or foreign ``model.onnx``
in one line instead of a protobuf or onnxruntime traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from medserve.errors import VerificationError
from medserve.loaders import SignatureInfo, TensorInfo

if TYPE_CHECKING:
    import numpy as np

# onnx.TensorProto element types -> Triton config data types.
ONNX_TO_TRITON = {
    1: "TYPE_FP32",
    2: "TYPE_UINT8",
    3: "TYPE_INT8",
    6: "TYPE_INT32",
    7: "TYPE_INT64",
    8: "TYPE_STRING",
    9: "TYPE_BOOL",
    10: "TYPE_FP16",
    11: "TYPE_FP64",
}


def _load(path: Path) -> object:
    import onnx

    try:
        return onnx.load(str(path))
    except (OSError, ValueError) as exc:
        raise VerificationError(f"cannot read ONNX model {path}: {exc}") from exc
    except Exception as exc:  # protobuf's DecodeError on a damaged file.
        raise VerificationError(
            f"{path} is not a valid ONNX model ({type(exc).__name__}); re-export it"
        ) from exc


def read_onnx_signature(path: Path) -> SignatureInfo:
    """Inputs and outputs of ``path`` by name, as Triton's config describes them.

    Raises:
        VerificationError: The file is unreadable or not an ONNX model.
    """
    graph = _load(path).graph  # type: ignore[attr-defined]
    initializers = {init.name for init in graph.initializer}

    def describe(values: object) -> dict[str, TensorInfo]:
        described = {}
        for value in values:  # type: ignore[attr-defined]
            if value.name in initializers:
                continue
            tensor = value.type.tensor_type
            dims = tuple(
                int(dim.dim_value) if dim.HasField("dim_value") else -1 for dim in tensor.shape.dim
            )
            data_type = ONNX_TO_TRITON.get(tensor.elem_type, f"ONNX_{tensor.elem_type}")
            described[value.name] = TensorInfo(data_type, dims)
        return described

    return SignatureInfo(inputs=describe(graph.input), outputs=describe(graph.output))


def onnx_opset(path: Path) -> int:
    """The opset of the default ONNX domain that ``path`` was written for.

    Raises:
        VerificationError: The file is unreadable or imports no default opset.
    """
    for entry in _load(path).opset_import:  # type: ignore[attr-defined]
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    raise VerificationError(f"{path} imports no default-domain ONNX opset")


def run_onnx(
    path: Path, feeds: dict[str, np.ndarray], *, threads: int = 0
) -> dict[str, np.ndarray]:
    """Run ``path`` with onnxruntime on the CPU provider and return outputs by name.

    Args:
        path: The ONNX file.
        feeds: Input arrays by input name.
        threads: Intra-op threads (0: onnxruntime's default).

    Raises:
        VerificationError: onnxruntime cannot load or run the model.
    """
    import onnxruntime as ort

    try:
        session = _session(path, threads)
        names = [output.name for output in session.get_outputs()]
        values = session.run(names, feeds)
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types.
        raise _run_error(path, exc, ort.__version__) from exc
    return dict(zip(names, values, strict=True))


def run_onnx_batched(
    path: Path, input_name: str, images: np.ndarray, output_name: str, *, batch_size: int = 32
) -> np.ndarray:
    """One output of ``path`` for many ``images``, run ``batch_size`` at a time in one session.

    A whole validation split in one call would hold every activation of every
    image at once (gigabytes at 224x224); batches keep it to a few hundred MB.

    Raises:
        VerificationError: onnxruntime cannot load or run the model.
    """
    import numpy as np
    import onnxruntime as ort

    try:
        session = _session(path, 0)
        parts = [
            session.run([output_name], {input_name: images[start : start + batch_size]})[0]
            for start in range(0, len(images), batch_size)
        ]
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types.
        raise _run_error(path, exc, ort.__version__) from exc
    return np.concatenate(parts, axis=0)


def _session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3  # Errors only: they are re-raised by the callers.
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def _run_error(path: Path, exc: Exception, version: str) -> VerificationError:
    first = str(exc).splitlines()[0][:300] if str(exc) else ""
    return VerificationError(
        f"onnxruntime {version} could not run {path}: {type(exc).__name__}: {first}"
    )
