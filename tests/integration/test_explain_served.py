"""``medcnn_explain`` on the real local tritonserver: served heatmaps, the client, the CLI.

Uses the session fixtures of ``tests/integration/conftest.py``: ``local_triton``
serves ``served_repo`` (a tiny exported model, 32x32, labels ("normal",
"lesion"), max batch 16) through ``configs/local.pbtxt``; ``served_keras_model``
is the Keras model it was exported from (the in-process reference).
"""

from __future__ import annotations

import asyncio
import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from PIL import Image
from pydicom.data import get_testdata_file
from tritonclient.utils import InferenceServerException

from medserve.explain.gradcam import explain_images, gradcam_parts
from medserve_client import AsyncClient, Client, InvalidInputError
from medserve_client._inputs import prepare_tensor
from medserve_client.cli import main as client_main

pytestmark = pytest.mark.integration

EXPLAIN = "medcnn_explain"


def _images(count: int, seed: int, size: tuple[int, int] = (32, 32)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (count, *size, 3), dtype=np.uint8)


def _raw_explain(url: str, images: np.ndarray, indices: np.ndarray) -> dict[str, np.ndarray]:
    with grpcclient.InferenceServerClient(url) as raw:
        image_input = grpcclient.InferInput("image", list(images.shape), "UINT8")
        image_input.set_data_from_numpy(images)
        class_input = grpcclient.InferInput("class_index", [len(indices), 1], "INT32")
        class_input.set_data_from_numpy(indices.astype(np.int32).reshape(-1, 1))
        result = raw.infer(EXPLAIN, [image_input, class_input])
        return {name: result.as_numpy(name) for name in ("probabilities", "heatmap")}


def test_served_heatmaps_match_the_in_process_gradcam_to_1e_4(
    local_triton: Any, served_keras_model: Any
) -> None:
    images = _images(6, seed=11)
    indices = np.array([-1, 0, 1, -1, 1, 0], dtype=np.int32)
    served = _raw_explain(local_triton.grpc_url, images, indices)
    probabilities, heatmaps = explain_images(gradcam_parts(served_keras_model), images, indices)
    assert served["heatmap"].shape == (6, 32, 32)
    assert heatmaps.max() > 0  # A real map, not a trivially equal pair of zeros.
    np.testing.assert_allclose(served["heatmap"], heatmaps, atol=1e-4)
    np.testing.assert_allclose(served["probabilities"], probabilities, atol=1e-5)


def test_concurrent_explain_requests_with_a_bad_class_index_fail_alone(
    local_triton: Any, served_keras_model: Any
) -> None:
    images = _images(8, seed=12)
    indices = np.array([-1] * 8, dtype=np.int32)
    indices[3] = 5  # Not a class of this two-class model.

    def one(row: int) -> Any:
        try:
            return _raw_explain(
                local_triton.grpc_url, images[row : row + 1], indices[row : row + 1]
            )
        except InferenceServerException as exc:
            return exc

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(8)))
    assert isinstance(results[3], InferenceServerException)
    assert "class_index must be -1 (predicted class) or 0..1" in str(results[3])
    _, heatmaps = explain_images(gradcam_parts(served_keras_model), images, -1)
    for row, result in enumerate(results):
        if row != 3:
            np.testing.assert_allclose(result["heatmap"][0], heatmaps[row], atol=1e-4)


def test_client_explain_splits_above_the_batch_limit_and_keeps_the_order(
    local_triton: Any, served_keras_model: Any
) -> None:
    images = _images(20, seed=13)  # The explain model's max_batch_size is 16.
    with Client(local_triton.grpc_url) as medserve:
        explanations = medserve.explain(list(images), class_index="lesion")
    _, heatmaps = explain_images(gradcam_parts(served_keras_model), images, 1)
    assert len(explanations) == 20
    for explanation, expected in zip(explanations, heatmaps, strict=True):
        assert (explanation.class_index, explanation.label) == (1, "lesion")
        np.testing.assert_allclose(explanation.heatmap, expected, atol=1e-4)
        assert explanation.overlay.size[0] == 32 and explanation.overlay.size[1] > 32
        assert "not a diagnosis" in explanation.note


def test_client_explains_dicom_like_classify_and_refuses_a_class_that_does_not_exist(
    local_triton: Any, served_keras_model: Any
) -> None:
    ct = get_testdata_file("CT_small.dcm")
    pixels = prepare_tensor(ct, index=0, target_hw=(32, 32))
    with Client(local_triton.grpc_url) as medserve:
        explanation = medserve.explain(ct)[0]
        prediction = medserve.classify(ct)[0]
        with pytest.raises(InvalidInputError, match="class index 2 does not exist"):
            medserve.explain(ct, class_index=2)
        with pytest.raises(InvalidInputError, match="class 'tumour' does not exist"):
            medserve.explain(ct, class_index="tumour")
    _, heatmaps = explain_images(gradcam_parts(served_keras_model), pixels[None], -1)
    np.testing.assert_allclose(explanation.heatmap, heatmaps[0], atol=1e-4)
    assert explanation.label == prediction.label
    np.testing.assert_allclose(
        explanation.prediction.probabilities, prediction.probabilities, atol=1e-6
    )


def test_async_client_explain_matches_the_blocking_one(local_triton: Any) -> None:
    images = list(_images(3, seed=14))

    async def run() -> list[Any]:
        async with AsyncClient(local_triton.grpc_url) as medserve:
            return await medserve.explain(images, class_index=0)

    explanations = asyncio.run(run())
    with Client(local_triton.http_url) as medserve:
        blocking = medserve.explain(images, class_index=0)
    for a, b in zip(explanations, blocking, strict=True):
        np.testing.assert_allclose(a.heatmap, b.heatmap, atol=1e-6)


def test_cli_explain_writes_the_overlay_and_an_unreadable_file_fails_alone(
    local_triton: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ct = str(get_testdata_file("CT_small.dcm"))
    out = tmp_path / "overlay.png"
    status = client_main(["--url", local_triton.grpc_url, "explain", ct, "--out", str(out)])
    printed = capsys.readouterr()
    assert status == 0, printed.err
    assert "not a diagnosis" in printed.out and str(out) in printed.out
    assert Image.open(out).size[0] == 32

    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    good = tmp_path / "scan.png"
    buffer = io.BytesIO()
    Image.fromarray(_images(1, seed=15)[0]).save(buffer, format="PNG")
    good.write_bytes(buffer.getvalue())
    argv = ["--url", local_triton.grpc_url, "explain", str(broken), str(good)]
    status = client_main([*argv, "--out-dir", str(tmp_path / "overlays")])
    printed = capsys.readouterr()
    assert status != 0
    assert "broken.png" in printed.err
    assert (tmp_path / "overlays" / "scan.overlay.png").is_file()
    assert not (tmp_path / "overlays" / "broken.overlay.png").exists()
