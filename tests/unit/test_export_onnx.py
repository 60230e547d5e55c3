"""Specs of the ONNX artifact of ``medserve export``: contract, parity, card, formats, failures."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from tiny_export import TINY_SIZE, ExportedRepo

from medserve.cli import main
from medserve.loaders import read_signature
from medserve.model_config import INT8_KINDS, ONNX_KINDS, config_kinds, config_path, parse_config
from medserve.onnx_export import ONNX_OPSET
from medserve.onnx_loaders import onnx_opset, read_onnx_signature, run_onnx
from medserve.repository import TMP_PREFIX

pytestmark = pytest.mark.slow


def test_export_writes_model_onnx_the_onnx_configs_and_the_pillow_decoder(
    exported_repo: ExportedRepo,
) -> None:
    from importlib.resources import files

    repo = exported_repo.repo
    assert (repo / "medcnn" / "1" / "model.onnx").is_file()
    for model in ("medcnn", "medcnn_preprocess"):
        for kind in ONNX_KINDS:
            # An export without --int8 writes no INT8 config (test_int8_export).
            assert config_path(repo / model, kind).is_file() == (kind not in INT8_KINDS)
    decoder = (files("medserve.triton_backend") / "decode_pillow.py").read_bytes()
    assert (repo / "medcnn_preprocess" / "1" / "decode_pillow.py").read_bytes() == decoder


def test_onnx_takes_uint8_image_and_returns_named_probabilities_with_a_dynamic_batch(
    exported_repo: ExportedRepo,
) -> None:
    path = exported_repo.repo / "medcnn" / "1" / "model.onnx"
    signature = read_onnx_signature(path)
    assert set(signature.inputs) == {"image"} and set(signature.outputs) == {"probabilities"}
    assert signature.inputs["image"].data_type == "TYPE_UINT8"
    assert signature.inputs["image"].shape == (-1, *TINY_SIZE, 3)
    assert signature.outputs["probabilities"].data_type == "TYPE_FP32"
    assert signature.outputs["probabilities"].shape == (-1, 3)
    assert onnx_opset(path) == ONNX_OPSET


@pytest.mark.parametrize("batch", [1, 5])
def test_onnxruntime_matches_the_keras_model_on_new_images(
    exported_repo: ExportedRepo, batch: int
) -> None:
    rng = np.random.default_rng(batch)
    images = rng.integers(0, 256, (batch, *TINY_SIZE, 3), dtype=np.uint8)
    got = run_onnx(exported_repo.repo / "medcnn" / "1" / "model.onnx", {"image": images})
    expected = np.asarray(exported_repo.model(images.astype(np.float32) / np.float32(255.0)))
    np.testing.assert_allclose(got["probabilities"], expected, rtol=0, atol=1e-5)


def test_model_card_records_opset_converter_versions_and_sha256_of_model_onnx(
    exported_repo: ExportedRepo,
) -> None:
    version_dir = exported_repo.repo / "medcnn" / "1"
    card = json.loads((version_dir / "model_card.json").read_text())
    digest = hashlib.sha256((version_dir / "model.onnx").read_bytes()).hexdigest()
    assert card["formats"] == ["savedmodel", "onnx"]
    assert card["onnx"]["opset"] == ONNX_OPSET
    assert set(card["onnx"]["converter"]) == {"keras", "tf2onnx", "onnx"}
    assert card["onnx"]["sha256"] == digest == card["files"]["model.onnx"]


def test_every_config_parses_and_names_tensors_that_exist_in_its_artifact(
    exported_repo: ExportedRepo,
) -> None:
    repo = exported_repo.repo
    artifacts = {
        "medcnn": read_signature(repo / "medcnn" / "1" / "model.savedmodel"),
        "medcnn_preprocess": read_signature(repo / "medcnn_preprocess" / "1" / "model.savedmodel"),
    }
    onnx = read_onnx_signature(repo / "medcnn" / "1" / "model.onnx")
    for model, signature in artifacts.items():
        for kind in config_kinds(onnx=True):
            config = parse_config(config_path(repo / model, kind))
            # The Pillow decoder serves the TF decoder's contract; the ONNX
            # classifier configs describe model.onnx.
            actual = onnx if (model == "medcnn" and kind in ONNX_KINDS) else signature
            for tensor in config.input:
                assert tensor.name in actual.inputs, (model, kind, tensor.name)
                assert tuple(tensor.dims) == actual.inputs[tensor.name].shape[1:]
            for tensor in config.output:
                assert tensor.name in actual.outputs, (model, kind, tensor.name)
                assert tuple(tensor.dims) == actual.outputs[tensor.name].shape[1:]


def test_formats_savedmodel_writes_no_onnx_removes_onnx_configs_and_runs_tensorflow_locally(
    exported_repo: ExportedRepo, repo_copy: Path
) -> None:
    argv = ["export", str(exported_repo.model_path), "--repo", str(repo_copy)]
    assert main([*argv, "--max-batch-size", "8", "--formats", "savedmodel"]) == 0
    version_dir = repo_copy / "medcnn" / "2"
    assert (version_dir / "model.savedmodel").is_dir()
    assert not (version_dir / "model.onnx").exists()
    for model in ("medcnn", "medcnn_preprocess"):
        for kind in ONNX_KINDS:
            assert not config_path(repo_copy / model, kind).exists()
    local = parse_config(config_path(repo_copy / "medcnn", "local"))
    assert local.parameters["runtime"].string_value == "tensorflow"
    card = json.loads((version_dir / "model_card.json").read_text())
    assert card["formats"] == ["savedmodel"] and "onnx" not in card
    assert main(["verify", str(repo_copy)]) == 0


def _unconvertible_model() -> object:
    import keras
    import tensorflow as tf

    class IncompleteBeta(keras.layers.Layer):
        """A layer whose TensorFlow op (Betainc) tf2onnx cannot map to ONNX."""

        def call(self, x: tf.Tensor) -> tf.Tensor:
            ones = tf.ones_like(x)
            return tf.math.betainc(ones, ones, tf.clip_by_value(x, 0.1, 0.9))

    inputs = keras.Input((*TINY_SIZE, 3))
    x = IncompleteBeta(name="incomplete_beta")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(3, activation="softmax")(x)
    return keras.Model(inputs, outputs)


def test_a_model_onnx_cannot_express_fails_naming_layer_and_op_and_leaves_no_version(
    tmp_path: Path,
) -> None:
    from medserve.errors import UsageError
    from medserve.exporter import export_model
    from medserve.spec import ModelSpec

    spec = ModelSpec(labels=("a", "b", "c"), image_size=TINY_SIZE, max_batch_size=4)
    repo = tmp_path / "repo"
    with pytest.raises(UsageError) as caught:
        export_model(_unconvertible_model(), repo, spec)
    message = str(caught.value)
    assert "'incomplete_beta'" in message and "'Betainc'" in message
    assert "--formats savedmodel" in message
    leftovers = [p.name for p in repo.rglob("*") if p.name.isdigit() or TMP_PREFIX in p.name]
    assert leftovers == []


def test_cli_export_rejects_unknown_formats_and_a_missing_savedmodel_with_status_2(
    exported_repo: ExportedRepo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["export", str(exported_repo.model_path), "--repo", str(tmp_path / "repo")]
    assert main([*argv, "--formats", "savedmodel,tflite"]) == 2
    assert "unknown export format(s) tflite" in capsys.readouterr().err
    assert main([*argv, "--formats", "onnx"]) == 2
    assert "must include savedmodel" in capsys.readouterr().err
    assert not (tmp_path / "repo" / "medcnn").exists()
