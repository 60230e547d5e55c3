"""Specs of ``medserve verify`` on the ONNX side: model.onnx, its configs, the Pillow decoder."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import text_format
from tiny_export import TINY_LABELS, TINY_MAX_BATCH, TINY_SIZE, ExportedRepo, build_tiny_model
from tritonclient.grpc import model_config_pb2 as mc

from medserve.cli import main
from medserve.errors import VerificationError
from medserve.repository import sha256_file
from medserve.verify import verify_repository

pytestmark = pytest.mark.slow


def _replace_onnx(version_dir: Path, edit: Callable[[Any], None] | None = None) -> None:
    """Rewrite model.onnx and re-record its checksum, as a careless repackaging would."""
    import onnx

    path = version_dir / "model.onnx"
    if edit is not None:
        graph = onnx.load(str(path))
        edit(graph)
        onnx.save(graph, str(path))
    card_path = version_dir / "model_card.json"
    card = json.loads(card_path.read_text())
    card["files"]["model.onnx"] = sha256_file(path)
    card_path.write_text(json.dumps(card))


def test_verify_reports_onnx_parity_configs_and_the_pillow_decoder(
    exported_repo: ExportedRepo,
) -> None:
    joined = "\n".join(verify_repository(exported_repo.repo).lines())
    for subject in (
        "medcnn/configs/onnx-gpu.pbtxt: backend onnxruntime KIND_GPU",
        "medcnn/configs/onnx-cpu.pbtxt: backend onnxruntime KIND_CPU",
        "medcnn/1/model.onnx: opset 17",
        "medcnn/1/model.onnx: onnxruntime: max |diff|",
        "medcnn_preprocess/configs/onnx-cpu.pbtxt: backend python KIND_CPU, Pillow, image_bytes",
        "medcnn_preprocess/1: Pillow decoder: PNG exact",
    ):
        assert f"ok  {subject}" in joined


def test_verify_catches_a_tampered_model_onnx(repo_copy: Path) -> None:
    path = repo_copy / "medcnn" / "1" / "model.onnx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(VerificationError, match=r"model\.onnx does not match its sha256"):
        verify_repository(repo_copy)


def test_verify_catches_a_model_onnx_of_another_model_even_with_a_matching_checksum(
    repo_copy: Path, tmp_path: Path
) -> None:
    from medserve.onnx_export import write_classifier_onnx
    from medserve.spec import ModelSpec

    spec = ModelSpec(labels=TINY_LABELS, image_size=TINY_SIZE, max_batch_size=TINY_MAX_BATCH)
    other = tmp_path / "other.onnx"
    write_classifier_onnx(build_tiny_model(seed=7), other, spec)
    version_dir = repo_copy / "medcnn" / "1"
    other.replace(version_dir / "model.onnx")
    _replace_onnx(version_dir)
    with pytest.raises(VerificationError, match="onnxruntime output vs recorded output"):
        verify_repository(repo_copy)


def test_verify_catches_a_model_onnx_whose_output_name_differs_from_the_configs(
    repo_copy: Path,
) -> None:
    def rename(graph: Any) -> None:
        for node in graph.graph.node:
            node.output[:] = ["scores" if n == "probabilities" else n for n in node.output]
        graph.graph.output[0].name = "scores"

    _replace_onnx(repo_copy / "medcnn" / "1", rename)
    with pytest.raises(VerificationError, match=r"onnx-gpu\.pbtxt: config outputs.*scores"):
        verify_repository(repo_copy)


def test_verify_catches_a_model_onnx_with_another_opset_than_recorded(repo_copy: Path) -> None:
    def restamp(graph: Any) -> None:
        for entry in graph.opset_import:
            if entry.domain in ("", "ai.onnx"):
                entry.version = 16

    _replace_onnx(repo_copy / "medcnn" / "1", restamp)
    with pytest.raises(VerificationError, match="stamped opset 16, but the model card records 17"):
        verify_repository(repo_copy)


def test_verify_catches_an_onnx_config_without_tensorrt_profiles(repo_copy: Path) -> None:
    path = repo_copy / "medcnn" / "configs" / "onnx-gpu.pbtxt"
    config = text_format.Parse(path.read_text(), mc.ModelConfig())
    trt = config.optimization.execution_accelerators.gpu_execution_accelerator[0]
    del trt.parameters["trt_profile_max_shapes"]
    path.write_text(text_format.MessageToString(config))
    with pytest.raises(VerificationError, match="trt_profile_max_shapes must be image:8x32x32x3"):
        verify_repository(repo_copy)


def test_verify_catches_an_onnx_config_left_behind_without_model_onnx(repo_copy: Path) -> None:
    version_dir = repo_copy / "medcnn" / "1"
    (version_dir / "model.onnx").unlink()
    card_path = version_dir / "model_card.json"
    card = json.loads(card_path.read_text())
    del card["files"]["model.onnx"]
    card_path.write_text(json.dumps(card))
    with pytest.raises(VerificationError, match=r"onnx-gpu\.pbtxt serves model\.onnx"):
        verify_repository(repo_copy)


def test_verify_catches_a_decoder_config_without_a_valid_pixel_cap(
    repo_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = repo_copy / "medcnn_preprocess" / "configs" / "onnx-cpu.pbtxt"
    config = text_format.Parse(path.read_text(), mc.ModelConfig())
    config.parameters["max_pixels"].string_value = "lots"
    path.write_text(text_format.MessageToString(config))
    assert main(["verify", str(repo_copy)]) == 1
    error = capsys.readouterr().err
    assert "'max_pixels' is 'lots' but the decoder graph was exported with" in error
