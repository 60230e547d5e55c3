"""Triton Python-backend model that runs a TensorFlow SavedModel or an ONNX file, batched.

Usage (the exporter copies this file next to the SavedModel)::

    <repo>/medcnn/1/model.py             # this file
    <repo>/medcnn/1/model.savedmodel/    # signature "serving_default"
    <repo>/medcnn/1/model.onnx           # the same model for onnxruntime
    <repo>/medcnn/configs/local.pbtxt    # backend: "python", dynamic_batching,
                                         # parameters runtime: "onnxruntime"

    # locate the template from exporter code:
    from importlib.resources import files
    template = files("medserve.triton_backend") / "model.py"

Triton imports this file inside its Python-backend stub process (one process
per model instance), where ``triton_python_backend_utils`` exists. Only the
local server runs it (``configs/local.pbtxt``; the Kubernetes deployments use
Triton's TensorFlow and onnxruntime backends), and ``medserve serve`` starts
the stub with the Python that runs medserve, so the work is done by the
installed package: :mod:`medserve.triton_backend.serving` (batching, errors),
``runtimes`` (TensorFlow or onnxruntime), ``threads`` (thread pools) and
``served_config`` (what the config declares). This file only binds Triton's
utils module to it.

Config ``parameters``: ``runtime`` (``"tensorflow"``, the default, loads
``model.savedmodel``; ``"onnxruntime"`` loads ``onnx_file``, default
``model.onnx``), ``intra_op_threads`` and ``inter_op_threads`` (string values).
"""

from __future__ import annotations

import triton_python_backend_utils as pb_utils

try:
    from medserve.triton_backend.serving import ServedModel
except ImportError as exc:  # A server started with a Python that lacks medserve.
    raise ImportError(
        f"this model needs the medserve package in the server's Python ({exc}); start the "
        "server with `medserve serve` from the environment `make venv` builds"
    ) from exc


class TritonPythonModel(ServedModel):
    """The model Triton instantiates: :class:`ServedModel` with the stub's utils."""

    utils = pb_utils
