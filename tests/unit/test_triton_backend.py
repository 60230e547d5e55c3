"""The exported Python-backend ``model.py``, run in-process with a fake of Triton's utils.

Each test imports the exported template fresh with ``fake_pb_utils`` standing
in for ``triton_python_backend_utils``, initialises it with the repository's
``configs/local.pbtxt`` (as JSON, the way Triton passes it) and calls
``execute`` with requests. The same file under the real ``tritonserver`` is
covered by the integration tests.
"""

from __future__ import annotations

import atexit
import importlib.util
import io
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fake_pb_utils
import numpy as np
import pytest
from google.protobuf import json_format, text_format
from tiny_export import ExportedRepo
from tritonclient.grpc import model_config_pb2 as mc

from medserve.loaders import run_eager
from medserve.spec import SAVEDMODEL_DIRNAME

Loader = Callable[..., tuple[Any, Any]]


def _config_json(model_dir: Path, **edits: Any) -> str:
    config = text_format.Parse(
        (model_dir / "configs" / "local.pbtxt").read_text(), mc.ModelConfig()
    )
    document = json_format.MessageToDict(config, preserving_proto_field_name=True)
    document.update(edits)
    return json.dumps(document)


@pytest.fixture
def load_model(exported_repo: ExportedRepo, monkeypatch: pytest.MonkeyPatch) -> Loader:
    """``load_model(name, **config_edits)``: (initialised model, its fake utils module)."""
    exit_hooks: list[Callable[[], None]] = []
    # The template registers a hard exit for the stub process; never in pytest's.
    monkeypatch.setattr(atexit, "register", exit_hooks.append)

    def load(name: str, **edits: Any) -> tuple[Any, Any]:
        utils = fake_pb_utils.module()
        monkeypatch.setitem(sys.modules, "triton_python_backend_utils", utils)
        model_dir = exported_repo.repo / name
        spec = importlib.util.spec_from_file_location(
            f"template_{name}", model_dir / "1" / "model.py"
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        model = module.TritonPythonModel()
        model.initialize(
            {
                "model_config": _config_json(model_dir, **edits),
                "model_repository": str(model_dir),
                "model_version": "1",
                "model_name": name,
            }
        )
        utils.exit_hooks = exit_hooks
        utils.template = module
        return model, utils

    return load


def _images(count: int, seed: int, size: tuple[int, int]) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(count, *size, 3), dtype=np.uint8)


def _png(pixels: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def test_classifier_answers_each_request_of_a_batch_with_its_own_rows(
    load_model: Loader, exported_repo: ExportedRepo
) -> None:
    model, utils = load_model("medcnn")
    size = exported_repo.spec.image_size
    batches = [_images(n, seed=n, size=size) for n in (1, 3, 2)]
    responses = model.execute([fake_pb_utils.request(image=batch) for batch in batches])

    savedmodel = exported_repo.repo / "medcnn" / "1" / SAVEDMODEL_DIRNAME
    expected = run_eager(savedmodel, {"image": np.concatenate(batches)})["probabilities"]
    assert [r.has_error() for r in responses] == [False, False, False]
    got = np.concatenate([r.output("probabilities") for r in responses])
    assert [len(r.output("probabilities")) for r in responses] == [1, 3, 2]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    assert not [text for level, text in utils.Logger.lines if level == "error"]


def test_one_corrupt_image_fails_only_its_own_request_with_a_hint(
    load_model: Loader, exported_repo: ExportedRepo
) -> None:
    model, utils = load_model("medcnn_preprocess")
    pixels = _images(3, seed=5, size=exported_repo.spec.image_size)
    files = [_png(p) for p in pixels]
    files[1] = files[1][:40]  # A truncated PNG.
    requests = [
        fake_pb_utils.request(image_bytes=np.array([[data]], dtype=np.object_)) for data in files
    ]
    responses = model.execute(requests)

    assert [r.has_error() for r in responses] == [False, True, False]
    message = responses[1].error().message()
    assert "PNG or JPEG" in message and "image_bytes" in message
    for index in (0, 2):
        np.testing.assert_array_equal(responses[index].output("image")[0], pixels[index])
    # The batched call failed first, then each request ran on its own.
    assert any("one by one" in text for level, text in utils.Logger.lines if level == "warn")


def test_requests_missing_an_input_or_of_the_wrong_dtype_are_refused_alone(
    load_model: Loader, exported_repo: ExportedRepo
) -> None:
    model, _utils = load_model("medcnn")
    good = _images(1, seed=1, size=exported_repo.spec.image_size)
    responses = model.execute(
        [
            fake_pb_utils.request(pixels=good),
            fake_pb_utils.request(image=good.astype(np.float32)),
            fake_pb_utils.request(image=good),
        ]
    )
    assert [r.has_error() for r in responses] == [True, True, False]
    assert "missing input 'image'" in responses[0].error().message()
    assert "must be uint8, got float32" in responses[1].error().message()


def test_initialize_refuses_a_config_that_names_a_tensor_the_savedmodel_lacks(
    load_model: Loader,
) -> None:
    with pytest.raises(ValueError, match="'scan' is not an input of the SavedModel signature"):
        load_model(
            "medcnn",
            input=[{"name": "scan", "data_type": "TYPE_UINT8", "dims": ["32", "32", "3"]}],
        )


def test_initialize_registers_the_fast_exit_of_the_stub_process(load_model: Loader) -> None:
    _model, utils = load_model("medcnn")
    from medserve.triton_backend.serving import exit_now

    assert utils.exit_hooks == [exit_now]


def test_tensorflow_serves_every_batch_size_from_one_concrete_function(
    load_model: Loader, exported_repo: ExportedRepo
) -> None:
    model, _utils = load_model("medcnn")
    function = model.runner.function
    # The signature's batch axis is None: one graph for every batch size, never a retrace.
    assert function.structured_input_signature[1]["image"].shape[0] is None
    size = exported_repo.spec.image_size
    for count in (1, 2, 5):
        (response,) = model.execute([fake_pb_utils.request(image=_images(count, count, size))])
        assert len(response.output("probabilities")) == count
    assert model.runner.function is function


def test_onnx_file_parameter_names_the_onnx_model_and_is_checked(load_model: Loader) -> None:
    def parameters(onnx_file: str) -> dict[str, Any]:
        return {
            "runtime": {"string_value": "onnxruntime"},
            "onnx_file": {"string_value": onnx_file},
        }

    _model, utils = load_model("medcnn", parameters=parameters("model.onnx"))
    assert any("onnxruntime" in text for level, text in utils.Logger.lines if level == "info")
    with pytest.raises(ValueError, match=r"no model_int8\.onnx at .*; export it"):
        load_model("medcnn", parameters=parameters("model_int8.onnx"))
    with pytest.raises(ValueError, match="'onnx_file' must name a file in the version directory"):
        load_model("medcnn", parameters=parameters("../model.onnx"))


@pytest.mark.parametrize(
    ("config", "cpus", "pools"),
    [
        ({}, 2, (2, 1)),
        ({"instance_group": [{"count": 2}]}, 2, (1, 1)),
        ({"instance_group": [{"count": 4}]}, 2, (1, 1)),
        ({"parameters": {"intra_op_threads": {"string_value": "3"}}}, 2, (3, 1)),
        ({"parameters": {"inter_op_threads": {"string_value": "2"}}}, 4, (4, 2)),
    ],
)
def test_thread_pools_split_the_cpus_over_instances_unless_the_config_says(
    config: dict[str, Any], cpus: int, pools: tuple[int, int]
) -> None:
    from medserve.triton_backend.threads import choose_thread_pools

    assert choose_thread_pools(config, cpus) == pools


@pytest.mark.parametrize("value", ["0", "two"])
def test_a_bad_thread_pool_parameter_fails_the_load_naming_it(
    load_model: Loader, value: str
) -> None:
    with pytest.raises(ValueError, match="config parameter 'intra_op_threads' must be"):
        load_model("medcnn", parameters={"intra_op_threads": {"string_value": value}})
