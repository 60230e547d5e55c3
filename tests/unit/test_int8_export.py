"""``medserve export --int8``: the quantized file, its gate, its configs, and verify on it."""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
import sys
from pathlib import Path
from typing import Any

import fake_pb_utils
import numpy as np
import pytest
from google.protobuf import json_format
from int8_model import Int8Export
from tritonclient.grpc import model_config_pb2 as mc

from medserve.cli import main
from medserve.errors import Int8RefusedError, VerificationError
from medserve.int8 import MAX_AUC_DROP, MIN_TOP1_AGREEMENT, Int8Data, check_gate
from medserve.model_config import (
    INT8_KINDS,
    LOCAL_PREFERRED_BATCH_SIZES,
    config_path,
    parse_config,
)
from medserve.onnx_loaders import read_onnx_signature, run_onnx_batched
from medserve.repository import sha256_file
from medserve.spec import INT8_FILENAME, ONNX_FILENAME
from medserve.verify import verify_repository

pytestmark = pytest.mark.slow


def _version(export: Int8Export) -> Path:
    return export.repo / export.spec.name / "1"


def _outputs(path: Path, export: Int8Export, images: np.ndarray) -> np.ndarray:
    spec = export.spec
    return run_onnx_batched(path, spec.input_name, images, spec.output_name)


@pytest.fixture
def int8_copy(int8_export: Int8Export, tmp_path: Path) -> Path:
    """A private copy of the INT8 repository that a test may damage."""
    target = tmp_path / "repo"
    shutil.copytree(int8_export.repo, target)
    return target


def test_export_int8_writes_model_int8_onnx_and_records_the_gate_figures_in_the_card(
    int8_export: Int8Export,
) -> None:
    version = _version(int8_export)
    card = json.loads((version / "model_card.json").read_text())
    section = card["int8"]
    assert section["file"] == INT8_FILENAME
    # Checksummed like model.onnx: verify catches a tampered file.
    assert section["sha256"] == card["files"][INT8_FILENAME] == sha256_file(version / INT8_FILENAME)
    figures = section["agreement"]
    assert figures["validation_images"] == len(int8_export.validation_set) == 40
    assert figures["top1_agreement"] >= MIN_TOP1_AGREEMENT
    assert figures["fp32_roc_auc"] - figures["int8_roc_auc"] == pytest.approx(
        figures["roc_auc_drop"]
    )
    assert figures["roc_auc_drop"] <= MAX_AUC_DROP
    quantization = section["quantization"]
    assert quantization["format"] == "QDQ" and quantization["calibration_method"] == "MinMax"
    # Fewer training images than the default 256: all of them calibrate.
    assert quantization["calibration_images"] == len(int8_export.train_set) == 40
    assert section["gate"] == {"min_top1_agreement": 0.995, "max_roc_auc_drop": 0.005}
    markdown = (version / "model_card.md").read_text()
    assert "## INT8 model" in markdown
    assert (
        f"| ROC AUC | {figures['fp32_roc_auc']:.3f} | {figures['int8_roc_auc']:.3f} |" in markdown
    )
    # The figures are those of the very files: recompute them here.
    images = int8_export.validation_set.images
    fp32 = _outputs(version / ONNX_FILENAME, int8_export, images)
    int8 = _outputs(version / INT8_FILENAME, int8_export, images)
    assert np.mean(fp32.argmax(1) == int8.argmax(1)) == figures["top1_agreement"]
    assert np.abs(fp32 - int8).max() == pytest.approx(figures["max_abs_probability_diff"])
    assert np.mean(fp32.argmax(1) == int8_export.validation_set.labels) >= 0.8


def test_int8_model_keeps_the_uint8_input_with_cast_and_scaling_and_the_softmax_in_float(
    int8_export: Int8Export,
) -> None:
    import onnx

    path = _version(int8_export) / INT8_FILENAME
    signature = read_onnx_signature(path)
    assert signature.inputs["image"].data_type == "TYPE_UINT8"
    assert signature.inputs["image"].shape == (-1, 32, 32, 3)
    assert signature.outputs["probabilities"].data_type == "TYPE_FP32"
    nodes = onnx.load(str(path)).graph.node
    ops = [node.op_type for node in nodes]
    producers = {output: node for node in nodes for output in node.output}
    # Walk back from the first activation quantized to the uint8 input: all float ops.
    chain, tensor = [], nodes[ops.index("QuantizeLinear")].input[0]
    while tensor in producers:
        chain.append(producers[tensor].op_type)
        tensor = producers[tensor].input[0]
    assert tensor == "image"
    # uint8 -> float -> *1/255 (quant_pre_process folds /255), NHWC -> NCHW for the Conv.
    assert chain == ["Transpose", "Mul", "Cast"]
    assert {"QLinearConv", "ConvInteger"}.isdisjoint(ops)  # QDQ format, fused at load time
    assert ops.count("Conv") == 3 and ops.count("MatMul") == 2
    # The tail (softmax, temperature) stays float: the output is no DequantizeLinear.
    producer = next(n for n in nodes if "probabilities" in n.output)
    assert producer.op_type == "Softmax"


def test_int8_configs_parse_as_model_configs_and_serve_model_int8_onnx(
    int8_export: Int8Export,
) -> None:
    repo, spec = int8_export.repo, int8_export.spec
    local = parse_config(config_path(repo / spec.name, "local-int8"))
    assert local.backend == "python"
    assert local.parameters["runtime"].string_value == "onnxruntime"
    assert local.parameters["onnx_file"].string_value == INT8_FILENAME
    onnx_cpu = parse_config(config_path(repo / spec.name, "onnx-cpu-int8"))
    assert (onnx_cpu.backend, onnx_cpu.default_model_filename) == ("onnxruntime", INT8_FILENAME)
    assert [g.kind for g in onnx_cpu.instance_group] == [mc.ModelInstanceGroup.KIND_CPU]
    queue = onnx_cpu.dynamic_batching.default_queue_policy
    assert local.dynamic_batching.default_queue_policy == queue
    # local-int8 batches like onnxruntime under local, whatever runtime local runs.
    best = [min(size, 8) for size in LOCAL_PREFERRED_BATCH_SIZES["onnxruntime"]]
    assert list(local.dynamic_batching.preferred_batch_size) == best
    # --model-config-name applies to every model: the decoder has both names too...
    prep = repo / f"{spec.name}_preprocess"
    assert parse_config(config_path(prep, "local-int8")) == parse_config(config_path(prep, "local"))
    pillow = parse_config(config_path(prep, "onnx-cpu-int8"))
    assert pillow == parse_config(config_path(prep, "onnx-cpu"))
    # ...the Grad-CAM model explains with TensorFlow under local-int8 (not quantized), and
    # has no onnx-cpu-int8 config, like onnx-cpu (the k8s ONNX overlays leave it out).
    explain = repo / spec.explain_name
    assert parse_config(config_path(explain, "local-int8")) == parse_config(
        config_path(explain, "local")
    )
    assert not config_path(explain, "onnx-cpu-int8").exists()


def test_verify_checks_model_int8_onnx_against_its_configs_and_recorded_agreement(
    int8_export: Int8Export, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["verify", str(int8_export.repo)]) == 0
    out = capsys.readouterr().out
    for kind in INT8_KINDS:
        assert f"medcnn/configs/{kind}.pbtxt" in out
    assert "medcnn/1/model_int8.onnx: opset 17" in out
    assert "medcnn/1/model_int8.onnx: onnxruntime vs recorded FP32 outputs" in out


def test_verify_catches_a_tampered_int8_file(int8_copy: Path) -> None:
    path = int8_copy / "medcnn" / "1" / INT8_FILENAME
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(VerificationError, match=r"model_int8\.onnx does not match its sha256"):
        verify_repository(int8_copy)


def test_verify_catches_a_badly_quantized_int8_file_even_with_its_checksum_updated(
    int8_export: Int8Export, int8_copy: Path
) -> None:
    from medserve.int8 import _quantize

    version = int8_copy / "medcnn" / "1"
    # Re-quantized from black images, and the card's checksum made to match: only
    # the agreement with the recorded FP32 outputs can tell.
    black = np.zeros_like(int8_export.train_set.images[:16])
    _quantize(version / ONNX_FILENAME, version / INT8_FILENAME, black, int8_export.spec)
    card = json.loads((version / "model_card.json").read_text())
    card["files"][INT8_FILENAME] = sha256_file(version / INT8_FILENAME)
    (version / "model_card.json").write_text(json.dumps(card))
    with pytest.raises(VerificationError, match="computes the INT8 model differently"):
        verify_repository(int8_copy)


def test_verify_catches_int8_configs_left_behind_without_model_int8_onnx(int8_copy: Path) -> None:
    version = int8_copy / "medcnn" / "1"
    (version / INT8_FILENAME).unlink()
    card = json.loads((version / "model_card.json").read_text())
    del card["files"][INT8_FILENAME]
    (version / "model_card.json").write_text(json.dumps(card))
    with pytest.raises(VerificationError, match=r"local-int8\.pbtxt serves model_int8\.onnx"):
        verify_repository(int8_copy)


def test_export_refuses_an_int8_model_calibrated_on_black_images_and_writes_no_version(
    int8_export: Int8Export, int8_copy: Path
) -> None:
    from medserve.exporter import export_model
    from medserve.model import load_classifier

    # Black images calibrate every activation range to [0, 0]: real images
    # then saturate, top-1 agrees on about 58 % and the AUC drops by about 0.27.
    black = np.zeros_like(int8_export.train_set.images)
    data = Int8Data(calibration=black, validation=int8_export.validation_set)
    before = sorted(p.relative_to(int8_copy) for p in int8_copy.rglob("*"))
    with pytest.raises(Int8RefusedError) as caught:
        export_model(
            load_classifier(int8_export.model_path),
            int8_copy,
            int8_export.spec,
            training_summary=json.loads(
                (int8_export.model_path.parent / "training.json").read_text()
            ),
            int8=data,
        )
    message = str(caught.value)
    assert "the INT8 model was not written: on 40 validation images" in message
    assert "(at least 99.5% needed)" in message and "(at most 0.005 allowed)" in message
    assert "Nothing was exported" in message and "--int8-calibration-images" in message
    assert caught.value.exit_code == 2
    # No version 2, no staging directory, no config changed: the repository is as it was.
    assert sorted(p.relative_to(int8_copy) for p in int8_copy.rglob("*")) == before
    verify_repository(int8_copy)


def test_export_int8_without_the_training_record_is_a_usage_error(
    int8_export: Int8Export, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "alone" / "model.keras"
    model.parent.mkdir()
    shutil.copy(int8_export.model_path, model)
    argv = ["export", str(model), "--repo", str(tmp_path / "repo"), "--labels", "normal,lesion"]
    assert main([*argv, "--int8"]) == 2
    error = capsys.readouterr().err
    assert "training.json is missing" in error and "export without --int8" in error
    assert not (tmp_path / "repo").exists()


@pytest.mark.parametrize(
    ("agree", "drop", "passes"),
    [
        (0.995, 0.005, True),
        (1.0, -0.01, True),
        (0.994, 0.0, False),
        (1.0, 0.0051, False),
        (1.0, math.nan, False),
    ],
)
def test_gate_bounds_are_inclusive_and_an_undefined_auc_fails(
    agree: float, drop: float, passes: bool
) -> None:
    figures = {
        "validation_images": 200,
        "top1_agreement": agree,
        "fp32_roc_auc": 0.9,
        "int8_roc_auc": 0.9 - drop,
        "roc_auc_drop": drop,
    }
    if passes:
        check_gate(figures)
    else:
        with pytest.raises(Int8RefusedError, match="was not written"):
            check_gate(figures)


def _python_backend_model(export: Int8Export, monkeypatch: pytest.MonkeyPatch, **edits: Any) -> Any:
    """The exported model.py, initialised with ``configs/local-int8.pbtxt`` (plus ``edits``)."""
    import atexit

    monkeypatch.setattr(atexit, "register", lambda hook: None)
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", fake_pb_utils.module())
    model_dir = export.repo / export.spec.name
    spec = importlib.util.spec_from_file_location("template_int8", model_dir / "1" / "model.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = parse_config(config_path(model_dir, "local-int8"))
    for key, value in edits.items():
        config.parameters[key].string_value = value
    document = json_format.MessageToDict(config, preserving_proto_field_name=True)
    model = module.TritonPythonModel()
    model.initialize(
        {
            "model_config": json.dumps(document),
            "model_repository": str(model_dir),
            "model_version": "1",
            "model_name": export.spec.name,
        }
    )
    return model


def test_python_backend_runs_the_onnx_file_its_config_names(
    int8_export: Int8Export, monkeypatch: pytest.MonkeyPatch
) -> None:
    images = int8_export.validation_set.images[:6]
    version = _version(int8_export)
    for onnx_file in (INT8_FILENAME, ONNX_FILENAME):
        model = _python_backend_model(int8_export, monkeypatch, onnx_file=onnx_file)
        (response,) = model.execute([fake_pb_utils.request(image=images)])
        (tensor,) = response.output_tensors()
        expected = _outputs(version / onnx_file, int8_export, images)
        np.testing.assert_allclose(tensor.as_numpy(), expected, atol=1e-6)


@pytest.mark.parametrize("onnx_file", ["../model.onnx", "/etc/model.onnx", ".."])
def test_python_backend_refuses_an_onnx_file_outside_the_version_directory(
    int8_export: Int8Export, monkeypatch: pytest.MonkeyPatch, onnx_file: str
) -> None:
    with pytest.raises(ValueError, match="must name a file in the version directory"):
        _python_backend_model(int8_export, monkeypatch, onnx_file=onnx_file)
