"""Both local runtimes and the Pillow decoder on the session's real tritonserver.

Usage::

    .venv/bin/pytest tests/integration/test_two_runtimes.py

The session server serves the exported classifier under ``configs/local.pbtxt``
(one runtime) and a copy under the other runtime (``second_runtime``), so the
SavedModel under TensorFlow and ``model.onnx`` under onnxruntime answer the
same requests side by side; and the Pillow decoder that ``onnx-gpu`` and
``onnx-cpu`` use, on the Python backend with a small pixel cap.
"""

from __future__ import annotations

import io
import re
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from PIL import Image
from tritonclient.utils import InferenceServerException

from medserve.local_triton import LocalTriton
from medserve.spec import ModelSpec
from medserve.verify_onnx import PILLOW_TF_MAX_DIFF

pytestmark = pytest.mark.integration

ATOL = 1e-5


def _classify(client: Any, model: str, images: np.ndarray, spec: ModelSpec) -> np.ndarray:
    tensor = grpcclient.InferInput(spec.input_name, list(images.shape), "UINT8")
    tensor.set_data_from_numpy(images)
    result = client.infer(model, [tensor])
    return np.asarray(result.as_numpy(spec.output_name))


def _decode(client: Any, model: str, files: list[bytes], spec: ModelSpec) -> np.ndarray:
    batch = np.array(files, dtype=object).reshape(-1, 1)
    tensor = grpcclient.InferInput(spec.encoded_input_name, list(batch.shape), "BYTES")
    tensor.set_data_from_numpy(batch)
    return np.asarray(client.infer(model, [tensor]).as_numpy(spec.input_name))


def _encode(image: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=fmt)
    return buffer.getvalue()


def test_tensorflow_and_onnxruntime_served_locally_agree_within_1e_5(
    client: Any, served_spec: ModelSpec, second_runtime: Any, savedmodel_reference: Any
) -> None:
    images = np.random.default_rng(21).integers(
        0, 256, (6, *served_spec.input_shape), dtype=np.uint8
    )
    default = _classify(client, served_spec.name, images, served_spec)
    other = _classify(client, second_runtime.classifier, images, served_spec)
    np.testing.assert_allclose(default, other, rtol=0, atol=ATOL)
    np.testing.assert_allclose(other, savedmodel_reference.classify(images), rtol=0, atol=ATOL)


def test_the_server_log_shows_each_runtime_loaded_its_own_artifact(
    local_triton: LocalTriton, served_spec: ModelSpec, second_runtime: Any
) -> None:
    log_text = local_triton.log_path.read_text(errors="replace")
    runtimes = {}
    for model in (served_spec.name, second_runtime.classifier):
        match = re.search(rf"{re.escape(model)}: (TensorFlow|onnxruntime) \S+, intra_op", log_text)
        assert match, f"no runtime line for {model} in the server log"
        runtimes[model] = match.group(1).lower()
    assert set(runtimes.values()) == {"tensorflow", "onnxruntime"}
    assert runtimes[second_runtime.classifier] == second_runtime.runtime


def test_served_pillow_decoder_matches_the_tensorflow_decoder_within_the_bound(
    client: Any, served_spec: ModelSpec, second_runtime: Any, savedmodel_reference: Any
) -> None:
    rng = np.random.default_rng(5)
    height, width = served_spec.image_size
    exact = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    resized = rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)  # 1920 pixels, under the cap.
    files = [_encode(exact, "PNG"), _encode(resized, "PNG"), _encode(resized, "JPEG")]
    pillow = _decode(client, second_runtime.pillow_decoder, files, served_spec)
    tf = savedmodel_reference.decode(files)
    assert pillow.shape == tf.shape == (3, height, width, 3) and pillow.dtype == np.uint8
    np.testing.assert_array_equal(pillow[0], exact)
    diff = np.abs(pillow.astype(int) - tf.astype(int))
    assert diff[1].max() <= 1 and diff[2].max() <= PILLOW_TF_MAX_DIFF


def test_served_pillow_decoder_refuses_an_image_above_max_pixels_and_keeps_serving(
    client: Any, served_spec: ModelSpec, second_runtime: Any
) -> None:
    big = np.zeros((64, 64, 3), dtype=np.uint8)  # 4096 pixels > the test cap of 4000.
    with pytest.raises(InferenceServerException) as caught:
        _decode(client, second_runtime.pillow_decoder, [_encode(big, "PNG")], served_spec)
    message = caught.value.message()
    cap = second_runtime.max_pixels
    assert f"64x64 pixels (4096 to decode) exceeds max_pixels = {cap}" in message
    small = np.zeros((10, 10, 3), dtype=np.uint8)
    decoded = _decode(client, second_runtime.pillow_decoder, [_encode(small, "PNG")], served_spec)
    assert decoded.shape == (1, *served_spec.input_shape)
