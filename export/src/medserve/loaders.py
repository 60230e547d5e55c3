"""Load a SavedModel two ways and run its ``serving_default`` signature.

Usage::

    signature = read_signature(path)                  # what Triton's TF backend sees
    eager = run_eager(path, {"image": batch})         # tf.saved_model.load (TF2)
    session = run_session(path, {"image": batch})     # TF1 session, like Triton

Triton's TensorFlow backend does not use ``tf.saved_model.load``: it opens a
TF1-style session over the ``serve`` tag and feeds and fetches the tensors
named in the ``serving_default`` SignatureDef. A SavedModel can pass the first
and fail the second ("Could not find variable ...", Triton issue #7456), so the
verifier runs both.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from medserve.errors import VerificationError
from medserve.spec import SIGNATURE_NAME

if TYPE_CHECKING:
    import numpy as np

SERVE_TAG = "serve"
# TensorFlow DataType enum names -> Triton config data types.
TF_TO_TRITON = {
    "DT_UINT8": "TYPE_UINT8",
    "DT_FLOAT": "TYPE_FP32",
    "DT_STRING": "TYPE_STRING",
    "DT_INT32": "TYPE_INT32",
    "DT_INT64": "TYPE_INT64",
    "DT_HALF": "TYPE_FP16",
    "DT_DOUBLE": "TYPE_FP64",
}


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of a signature as Triton describes it.

    Attributes:
        data_type: Triton data type name, e.g. ``"TYPE_UINT8"``.
        shape: Full shape including the batch dimension (``-1`` when variable).
    """

    data_type: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class SignatureInfo:
    """Inputs and outputs of the ``serving_default`` signature, by key."""

    inputs: dict[str, TensorInfo]
    outputs: dict[str, TensorInfo]


def read_signature(path: Path) -> SignatureInfo:
    """Read ``serving_default`` from ``saved_model.pb`` without loading weights.

    Raises:
        VerificationError: The SavedModel is unreadable or lacks the signature.
    """
    from tensorflow.core.framework import types_pb2
    from tensorflow.core.protobuf import saved_model_pb2

    pb_path = path / "saved_model.pb"
    try:
        saved = saved_model_pb2.SavedModel.FromString(pb_path.read_bytes())
    except (OSError, ValueError) as exc:
        raise VerificationError(f"cannot read SavedModel {pb_path}: {exc}") from exc
    for meta_graph in saved.meta_graphs:
        if SERVE_TAG in meta_graph.meta_info_def.tags:
            break
    else:
        raise VerificationError(f"SavedModel {path} has no meta graph tagged '{SERVE_TAG}'")
    if SIGNATURE_NAME not in meta_graph.signature_def:
        raise VerificationError(
            f"SavedModel {path} has no '{SIGNATURE_NAME}' signature "
            f"(found {sorted(meta_graph.signature_def)})"
        )
    signature = meta_graph.signature_def[SIGNATURE_NAME]

    def describe(infos: object) -> dict[str, TensorInfo]:
        described = {}
        for key, info in infos.items():  # type: ignore[attr-defined]
            dtype = types_pb2.DataType.Name(info.dtype)
            dims = tuple(int(d.size) for d in info.tensor_shape.dim)
            described[key] = TensorInfo(TF_TO_TRITON.get(dtype, dtype), dims)
        return described

    return SignatureInfo(inputs=describe(signature.inputs), outputs=describe(signature.outputs))


def run_eager(path: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run ``serving_default`` after ``tf.saved_model.load``.

    Raises:
        VerificationError: Loading or running fails.
    """
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(str(path))
        function = loaded.signatures[SIGNATURE_NAME]
        outputs = function(**{key: tf.constant(value) for key, value in feeds.items()})
    except Exception as exc:  # TensorFlow raises many types; report them all the same way.
        raise VerificationError(
            f"tf.saved_model.load of {path} failed: {type(exc).__name__}: {_first_line(exc)}"
        ) from exc
    return {key: value.numpy() for key, value in outputs.items()}


def run_session(path: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run ``serving_default`` the way Triton's TF backend does: a TF1 session.

    Raises:
        VerificationError: The session loader or the run fails.
    """
    import tensorflow as tf

    graph = tf.Graph()
    try:
        with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
            # The TF1 loader is deprecated in TF 2 but is exactly what Triton's
            # TF backend uses; silence its deprecation notice, not its errors.
            tf_logger = logging.getLogger("tensorflow")
            level = tf_logger.level
            tf_logger.setLevel(logging.ERROR)
            try:
                meta_graph = tf.compat.v1.saved_model.loader.load(session, [SERVE_TAG], str(path))
            finally:
                tf_logger.setLevel(level)
            signature = meta_graph.signature_def[SIGNATURE_NAME]
            feed_dict = {signature.inputs[key].name: value for key, value in feeds.items()}
            keys = sorted(signature.outputs)
            values = session.run([signature.outputs[key].name for key in keys], feed_dict)
    except Exception as exc:  # TensorFlow raises many types; report them all the same way.
        raise VerificationError(
            f"TF1 session loader (as in Triton's TF backend) failed on {path}: "
            f"{type(exc).__name__}: {_first_line(exc)}"
        ) from exc
    return dict(zip(keys, values, strict=True))


def _first_line(exc: BaseException) -> str:
    """The informative line of an exception message (TF wraps it in stack dumps)."""
    noise = ("Graph execution error", "Detected at node", "<stack traces", "[[", "File ")
    for line in str(exc).splitlines():
        text = line.strip()
        if text and not text.startswith(noise):
            return text
    return str(exc).strip()
