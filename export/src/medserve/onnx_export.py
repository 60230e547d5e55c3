"""Write the classifier as ONNX: the same model and contract as the SavedModel.

Usage::

    info = write_classifier_onnx(model, version_dir / "model.onnx", spec)
    card_extra = {"onnx": info}        # opset, converter versions, sha256

The served contract is the SavedModel's: input ``image`` UINT8
``[-1, H, W, 3]``, cast and scaled to float32 in [0, 1] inside the graph,
output ``probabilities`` FP32 ``[-1, classes]``. A Keras wrapper model holds
the cast and the scaling in front of the classifier and is exported with
Keras's own ``model.export(path, format="onnx")`` (tf2onnx underneath; calling
``tf2onnx.from_keras`` on Keras 3 breaks, tensorflow-onnx #2329 and #2348).
Two things Keras needs: the wrapper is called once first ("The model provided
has never called"), and the graph output comes out as ``Identity:0``, so it is
renamed to ``probabilities`` here.

The opset is explicit (:data:`ONNX_OPSET`). Facts behind the choice, looked up
on 2026-11-28: Triton 26.08's ``build.py`` (server branch r26.08) builds its
onnxruntime backend with ONNX Runtime 1.28.0, and the main branch tracking
26.09 lists 1.27.0 or newer; every ONNX Runtime release runs all opsets from 7
up to the one it implements (ONNX Runtime "Versioning" and "compatibility"
docs), and 1.28 implements far beyond 17. tf2onnx 1.17, the converter Keras
uses, supports opsets up to 18 (``tf2onnx.constants.OPSET_TO_IR_VERSION``).
Opset 17 (ONNX 1.12) sits inside both ranges with room to spare.

tf2onnx does not fail on a TensorFlow op it cannot map: it logs "Tensorflow op
[...] is not supported", leaves the op in the graph and writes the file. The
graph is therefore checked node by node against the ONNX operator schemas, and
an unconvertible model fails the export with the op and the Keras layer named.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medserve.errors import UsageError
from medserve.spec import ModelSpec

if TYPE_CHECKING:
    import keras

log = logging.getLogger(__name__)

ONNX_OPSET = 17
# Name of the dynamic batch dimension (tf2onnx writes "unk__<n>").
_BATCH_DIM = "batch"


def write_classifier_onnx(model: keras.Model, path: Path, spec: ModelSpec) -> dict[str, Any]:
    """Export ``model`` with the uint8 input and the scaling in the graph to ``path``.

    Args:
        model: A Keras classifier taking float32 images in [0, 1].
        path: File to write (``.../<version>/model.onnx``).
        spec: Input size and tensor names.

    Returns:
        What the model card records: file, opset, IR version, converter
        versions and the file's sha256.

    Raises:
        UsageError: The model cannot be converted; the message names the
            TensorFlow op and the Keras layer it came from.
    """
    import keras
    import onnx
    import tf2onnx

    wrapper = _uint8_wrapper(model, spec)
    try:
        # Keras and tf2onnx print progress to stdout and INFO logs; keep the
        # CLI's output to what medserve says (unmapped ops are found below).
        with _quiet_converter():
            wrapper.export(str(path), format="onnx", opset_version=ONNX_OPSET, verbose=False)
    except Exception as exc:  # tf2onnx raises many types for one cause: not convertible.
        layer = _layer_in_text(wrapper, str(exc))
        where = f" in layer {layer!r}" if layer else ""
        raise UsageError(
            f"the model cannot be converted to ONNX{where}: {type(exc).__name__}: "
            f"{_first_line(exc)}; export the SavedModel alone with --formats savedmodel"
        ) from exc
    graph = onnx.load(str(path))
    _check_ops(graph, wrapper)
    _name_tensors(graph, spec)
    onnx.checker.check_model(graph)
    onnx.save(graph, str(path))
    return {
        "file": path.name,
        "opset": ONNX_OPSET,
        "ir_version": int(graph.ir_version),
        "converter": {
            "keras": keras.__version__,
            "tf2onnx": tf2onnx.__version__,
            "onnx": onnx.__version__,
        },
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
    }


@contextlib.contextmanager
def _quiet_converter() -> Iterator[None]:
    """Silence Keras's stdout, tf2onnx's INFO logs and its numpy FutureWarning."""
    converter_log = logging.getLogger("tf2onnx")
    level = converter_log.level
    converter_log.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        converter_log.setLevel(level)


def _uint8_wrapper(model: keras.Model, spec: ModelSpec) -> keras.Model:
    """``image`` uint8 -> cast, /255 -> ``model``: the SavedModel's serving function."""
    import keras
    import numpy as np

    image = keras.Input(shape=spec.input_shape, dtype="uint8", name=spec.input_name)
    # Division, not Rescaling's multiplication by 1/255: the same arithmetic
    # as the SavedModel's tf.cast(image, tf.float32) / 255.0.
    scaled = keras.layers.Lambda(
        lambda x: keras.ops.cast(x, "float32") / 255.0, name="scale_uint8"
    )(image)
    wrapper = keras.Model(image, model(scaled, training=False), name=f"{spec.name}_served")
    wrapper(np.zeros((1, *spec.input_shape), dtype=np.uint8))  # Keras exports called models only.
    return wrapper


def _check_ops(graph: Any, wrapper: keras.Model) -> None:
    """Every node must be an ONNX operator: tf2onnx leaves unmapped TF ops in place."""
    import onnx.defs

    for node in graph.graph.node:
        if not onnx.defs.has(node.op_type, node.domain):
            layer = _layer_in_text(wrapper, node.name)
            where = f"layer {layer!r}" if layer else f"node {node.name!r}"
            raise UsageError(
                f"the model cannot be converted to ONNX: {where} uses the TensorFlow op "
                f"{node.op_type!r}, which has no ONNX equivalent in tf2onnx (opset "
                f"{ONNX_OPSET}); replace that op, or export the SavedModel alone with "
                "--formats savedmodel"
            )


def _name_tensors(graph: Any, spec: ModelSpec) -> None:
    """Rename the output to ``probabilities`` and both batch dimensions to ``batch``."""
    (inp,) = graph.graph.input
    (out,) = graph.graph.output
    if inp.name != spec.input_name:
        raise UsageError(
            f"the ONNX export named its input {inp.name!r}, not {spec.input_name!r}; "
            "this Keras version exports differently, pin keras as export/pyproject.toml says"
        )
    old = out.name
    if old != spec.output_name:
        for node in graph.graph.node:
            for index, name in enumerate(node.output):
                if name == old:
                    node.output[index] = spec.output_name
            for index, name in enumerate(node.input):
                if name == old:
                    node.input[index] = spec.output_name
        out.name = spec.output_name
    for value in (inp, out):
        value.type.tensor_type.shape.dim[0].dim_param = _BATCH_DIM


def _layer_in_text(wrapper: keras.Model, text: str) -> str | None:
    """The Keras layer whose name scope appears in ``text`` (a node name or a message).

    tf2onnx node names are TensorFlow name scopes such as
    ``functional_1/my_layer_1/Betainc``: Keras adds a ``_<n>`` suffix to a
    layer's scope. The innermost matching layer wins.
    """
    names = sorted({layer.name for layer in _all_layers(wrapper)}, key=lambda name: -len(name))
    found: str | None = None
    for part in re.split(r"[/\s'\"\[\]:,]+", text):
        for name in names:
            if part == name or re.fullmatch(re.escape(name) + r"_\d+", part):
                found = name
                break
    return found


def _all_layers(model: Any) -> list[Any]:
    """Every layer of ``model``, nested models included."""
    layers = []
    for layer in getattr(model, "layers", []):
        layers.append(layer)
        layers.extend(_all_layers(layer))
    return layers


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0][:300] if lines else ""
