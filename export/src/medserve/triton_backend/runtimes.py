"""The two runtimes a Python-backend model can run: TensorFlow and onnxruntime.

Usage::

    runner = load_runner(served, version_dir, intra_op=2, inter_op=1, log=log)
    outputs = runner.run({"image": batch})       # {"probabilities": ndarray}

Both load their artifact once, check it against the config's tensor names and
data types, and run one batch per call on the CPU with the thread pools
given. Neither retraces per batch size: TensorFlow runs the SavedModel's
``serving_default`` concrete function, whose input signature has a ``None``
batch axis, and onnxruntime's session takes any batch of a dynamic axis.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from medserve.triton_backend.errors import short_reason
from medserve.triton_backend.served_config import (
    SAVEDMODEL_DIRNAME,
    SIGNATURE_NAME,
    ServedConfig,
)

# onnxruntime's tensor(...) type names -> numpy dtype names.
_ORT_TO_NUMPY = {"tensor(uint8)": "uint8", "tensor(float)": "float32", "tensor(string)": "string"}

Log = Callable[[str, str], None]


class Runner(Protocol):
    """One loaded model: runs a batch of named arrays, returns named outputs."""

    description: str

    def run(self, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
        """Outputs of one batch, by the config's output names."""
        ...

    def close(self) -> None:
        """Drop the model."""
        ...


class TensorFlowRunner:
    """The SavedModel's ``serving_default`` signature, called eagerly."""

    def __init__(self, served: ServedConfig, path: Path, intra_op: int, inter_op: int, log: Log):
        # Checked before importing TensorFlow (seconds) so a broken repository fails fast.
        if not (path / "saved_model.pb").is_file():
            raise ValueError(
                f"model {served.model_name}: no SavedModel at {path} (saved_model.pb is "
                "missing); export the model again with medserve export"
            )
        # Imported here, not at module import, so the stub starts fast and the
        # thread pools are set before TensorFlow creates its runtime context.
        import tensorflow as tf

        self._tf = tf
        try:
            tf.config.threading.set_intra_op_parallelism_threads(intra_op)
            tf.config.threading.set_inter_op_parallelism_threads(inter_op)
        except RuntimeError as exc:  # Context already initialised in this process.
            reason = short_reason(exc)
            log("warn", f"{served.model_name}: thread pools left as they were ({reason})")
        self.description = f"TensorFlow {tf.__version__}"
        self._loaded: Any = tf.saved_model.load(str(path))
        if SIGNATURE_NAME not in self._loaded.signatures:
            raise ValueError(
                f"model {served.model_name}: SavedModel {path} has no {SIGNATURE_NAME!r} "
                f"signature (has {sorted(self._loaded.signatures)})"
            )
        # A concrete function: one graph for every batch size (its signature's
        # batch axis is None), so a new batch size never traces again.
        self.function: Any = self._loaded.signatures[SIGNATURE_NAME]
        self._ranks = self._check_signature(served)

    def _check_signature(self, served: ServedConfig) -> dict[str, int | None]:
        """Match config tensors to signature tensors by name and dtype."""
        specs = self.function.structured_input_signature[1]
        out_specs = self.function.structured_outputs
        ranks: dict[str, int | None] = {}
        for name, data_type in served.inputs:
            if name not in specs:
                raise ValueError(
                    f"model {served.model_name}: config input {name!r} is not an input of the "
                    f"SavedModel signature (inputs: {sorted(specs)})"
                )
            served.check_dtype("input", name, data_type, specs[name].dtype.name)
            ranks[name] = specs[name].shape.rank
        for name, data_type, _dims in served.outputs:
            if name not in out_specs:
                raise ValueError(
                    f"model {served.model_name}: config output {name!r} is not an output of the "
                    f"SavedModel signature (outputs: {sorted(out_specs)})"
                )
            served.check_dtype("output", name, data_type, out_specs[name].dtype.name)
        return ranks

    def run(self, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
        """One call of the signature; outputs copied to host numpy arrays."""
        feeds = {
            name: self._tf.constant(fit_rank(array, self._ranks.get(name)))
            for name, array in arrays.items()
        }
        return {name: value.numpy() for name, value in self.function(**feeds).items()}

    def close(self) -> None:
        """Drop the SavedModel."""
        self.function = None
        self._loaded = None


class OnnxRunner:
    """An onnxruntime session on the CPU provider."""

    def __init__(self, served: ServedConfig, path: Path, intra_op: int, inter_op: int, log: Log):
        if not path.is_file():
            raise ValueError(
                f"model {served.model_name}: no {path.name} at {path}; export it with "
                "medserve export --formats savedmodel,onnx or set parameter runtime to tensorflow"
            )
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op
        options.inter_op_num_threads = inter_op
        # Idle pool threads sleep instead of spinning: they share the CPUs with
        # Triton, other instances and the clients.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        declared = {t.name: t.type for t in (*session.get_inputs(), *session.get_outputs())}
        for role, tensors in (("input", served.inputs), ("output", served.outputs)):
            for name, data_type, *_ in tensors:
                if name not in declared:
                    raise ValueError(
                        f"model {served.model_name}: config {role} {name!r} is not a tensor of "
                        f"{path.name} (it has {sorted(declared)})"
                    )
                served.check_dtype(role, name, data_type, _ORT_TO_NUMPY.get(declared[name], ""))
        self.description = f"onnxruntime {ort.__version__}"
        self._session: Any = session
        self._names = [name for name, _, _ in served.outputs]

    def run(self, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
        """One ``session.run``; numpy inputs are read in place (no copy on the CPU provider)."""
        return dict(zip(self._names, self._session.run(self._names, arrays), strict=True))

    def close(self) -> None:
        """Drop the session."""
        self._session = None


def load_runner(
    served: ServedConfig, version_dir: Path, *, intra_op: int, inter_op: int, log: Log
) -> Runner:
    """Load what ``served.runtime`` names from ``version_dir``.

    Raises:
        ValueError: The artifact is missing or disagrees with the config.
    """
    if served.runtime == "onnxruntime":
        return OnnxRunner(served, version_dir / served.onnx_file, intra_op, inter_op, log)
    return TensorFlowRunner(served, version_dir / SAVEDMODEL_DIRNAME, intra_op, inter_op, log)


def fit_rank(array: np.ndarray, rank: int | None) -> np.ndarray:
    """Drop or add trailing size-1 axes so ``array`` has the signature's rank.

    A STRING input declared with dims ``[1]`` arrives as ``[batch, 1]`` while a
    decode signature usually takes ``[batch]``; the reverse also happens.
    """
    if rank is None or array.ndim == rank:
        return array
    if array.ndim == rank + 1 and array.shape[-1] == 1:
        return array.reshape(array.shape[:-1])
    if array.ndim + 1 == rank:
        return array.reshape((*array.shape, 1))
    return array
