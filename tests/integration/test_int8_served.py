"""``model_int8.onnx`` served by the real tritonserver under ``--model-config-name=local-int8``.

Usage::

    .venv/bin/pytest tests/integration/test_int8_served.py

``medserve serve --config-name local-int8`` applies the name to every model of
the repository: the classifier runs ``model_int8.onnx`` on the Python
backend's onnxruntime, the decoder and the Grad-CAM model run as under
``local``, and the ensemble (no ``configs/``) keeps its ``config.pbtxt``. The
server starting at all proves every one of them loads.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from int8_model import Int8Export
from PIL import Image

from medserve.local_triton import LocalTriton
from medserve.onnx_loaders import run_onnx_batched
from medserve.spec import INT8_FILENAME, ONNX_FILENAME

pytestmark = pytest.mark.integration


def _infer(client: Any, model: str, name: str, data: np.ndarray, dtype: str, output: str) -> Any:
    tensor = grpcclient.InferInput(name, list(data.shape), dtype)
    tensor.set_data_from_numpy(data)
    return np.asarray(client.infer(model, [tensor]).as_numpy(output))


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def test_local_int8_serves_model_int8_onnx_that_classifies_like_fp32(
    int8_export: Int8Export, start_server: Callable[..., LocalTriton]
) -> None:
    spec = int8_export.spec
    server = start_server(int8_export.repo, config_name="local-int8")
    images = int8_export.validation_set.images[:16]  # two requests of max_batch_size
    version = int8_export.repo / spec.name / "1"
    int8 = run_onnx_batched(version / INT8_FILENAME, spec.input_name, images, spec.output_name)
    fp32 = run_onnx_batched(version / ONNX_FILENAME, spec.input_name, images, spec.output_name)
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        served = np.concatenate(
            [
                _infer(client, spec.name, spec.input_name, part, "UINT8", spec.output_name)
                for part in (images[: spec.max_batch_size], images[spec.max_batch_size :])
            ]
        )
        files = np.array([[_png(image)] for image in images[:4]], dtype=object)
        encoded = _infer(
            client, spec.encoded_name, spec.encoded_input_name, files, "BYTES", spec.output_name
        )
    # The served probabilities are model_int8.onnx's (not model.onnx's: they differ)...
    np.testing.assert_allclose(served, int8, rtol=0, atol=1e-5)
    assert np.abs(int8 - fp32).max() > 1e-4
    # ...and classify as FP32 does, on the uint8 path and through the decoder ensemble.
    np.testing.assert_array_equal(served.argmax(axis=1), fp32.argmax(axis=1))
    np.testing.assert_allclose(encoded, served[:4], rtol=0, atol=1e-5)
    assert np.mean(served.argmax(axis=1) == int8_export.validation_set.labels[:16]) >= 0.75
