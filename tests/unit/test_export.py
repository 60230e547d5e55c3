"""Specs of ``medserve export``: layout, signature, versions, atomicity, bad input."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format
from tiny_export import TINY_LABELS, ExportedRepo, build_tiny_model
from tritonclient.grpc import model_config_pb2 as mc

from medserve import exporter
from medserve.cli import main
from medserve.errors import UsageError
from medserve.loaders import read_signature, run_eager
from medserve.repository import TMP_PREFIX, file_checksums

pytestmark = pytest.mark.slow


def _hidden_or_numeric(model_dir: Path) -> list[str]:
    return sorted(p.name for p in model_dir.iterdir() if p.name.isdigit() or p.name.startswith("."))


def test_export_writes_the_documented_repository_layout(exported_repo: ExportedRepo) -> None:
    repo = exported_repo.repo
    expected = [
        "medcnn/config.pbtxt",
        "medcnn/configs/cpu.pbtxt",
        "medcnn/configs/local.pbtxt",
        "medcnn/labels.txt",
        "medcnn/medserve_spec.json",
        "medcnn/1/model.py",
        "medcnn/1/model_card.json",
        "medcnn/1/model_card.md",
        "medcnn/1/expected_io.npz",
        "medcnn/1/model.savedmodel/saved_model.pb",
        "medcnn_preprocess/config.pbtxt",
        "medcnn_preprocess/configs/cpu.pbtxt",
        "medcnn_preprocess/configs/local.pbtxt",
        "medcnn_preprocess/1/model.py",
        "medcnn_preprocess/1/model.savedmodel/saved_model.pb",
        "medcnn_encoded/config.pbtxt",
        "medcnn_encoded/labels.txt",
    ]
    missing = [name for name in expected if not (repo / name).is_file()]
    assert missing == []
    assert (repo / "medcnn_encoded" / "1").is_dir()
    assert (repo / "medcnn" / "labels.txt").read_text().splitlines() == list(TINY_LABELS)
    assert not any(p.name.startswith(TMP_PREFIX) for p in repo.rglob("*"))


def test_model_py_is_the_packaged_python_backend_template(exported_repo: ExportedRepo) -> None:
    from importlib.resources import files

    template = (files("medserve.triton_backend") / "model.py").read_bytes()
    for model in ("medcnn", "medcnn_preprocess"):
        assert (exported_repo.repo / model / "1" / "model.py").read_bytes() == template


def test_configs_on_disk_parse_as_model_config_named_after_their_model(
    exported_repo: ExportedRepo,
) -> None:
    paths = sorted(exported_repo.repo.rglob("*.pbtxt"))
    documented = {
        "medcnn/config.pbtxt",
        "medcnn/configs/cpu.pbtxt",
        "medcnn/configs/local.pbtxt",
        "medcnn_preprocess/config.pbtxt",
        "medcnn_encoded/config.pbtxt",
    }
    assert documented <= {p.relative_to(exported_repo.repo).as_posix() for p in paths}
    for path in paths:
        config = text_format.Parse(path.read_text(), mc.ModelConfig())
        model_dir = path.parent.parent if path.parent.name == "configs" else path.parent
        assert config.name == model_dir.name, path


def test_savedmodel_takes_uint8_image_and_returns_named_probabilities(
    exported_repo: ExportedRepo,
) -> None:
    signature = read_signature(exported_repo.repo / "medcnn" / "1" / "model.savedmodel")
    assert signature.inputs["image"].data_type == "TYPE_UINT8"
    assert signature.inputs["image"].shape == (-1, 32, 32, 3)
    assert signature.outputs["probabilities"].data_type == "TYPE_FP32"
    assert signature.outputs["probabilities"].shape == (-1, 3)


def test_model_card_records_training_facts_and_every_file_checksum(
    exported_repo: ExportedRepo,
) -> None:
    version_dir = exported_repo.repo / "medcnn" / "1"
    card = json.loads((version_dir / "model_card.json").read_text())
    assert card["labels"] == list(TINY_LABELS)
    assert card["class_counts"]["train"]["normal"] == 5
    assert card["metrics"]["val_accuracy"] == 0.5
    assert card["architecture"]["layers"][-1]["name"] == "probabilities"
    assert {"tensorflow", "keras"} <= set(card["versions"])
    assert card["files"] == file_checksums(
        version_dir, exclude=["model_card.json", "model_card.md"]
    )
    assert "model.py" in card["files"] and "expected_io.npz" in card["files"]


def test_a_model_without_a_training_run_is_served_uncalibrated_and_its_card_says_so(
    exported_repo: ExportedRepo,
) -> None:
    version_dir = exported_repo.repo / "medcnn" / "1"
    card = json.loads((version_dir / "model_card.json").read_text())
    assert card["calibration"]["temperature"] == 1.0
    assert card["calibration"]["applied"] is False
    assert "reliability.png" not in card["files"]
    text = (version_dir / "model_card.md").read_text()
    assert "## Validation metrics\n\nnot measured." in text
    assert "**T = 1.000** (no calibration recorded" in text
    assert "- Pointing game: not measured." in text


def _encode(array: np.ndarray, fmt: str) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


def test_preprocess_model_decodes_png_and_jpeg_to_the_served_shape(
    exported_repo: ExportedRepo,
) -> None:
    path = exported_repo.repo / "medcnn_preprocess" / "1" / "model.savedmodel"
    rng = np.random.default_rng(1)
    png = _encode(rng.integers(0, 256, (64, 48, 3), dtype=np.uint8), "PNG")
    jpeg = _encode(rng.integers(0, 256, (20, 90), dtype=np.uint8), "JPEG")
    batch = np.array([[png], [jpeg]], dtype=object)
    out = run_eager(path, {"image_bytes": batch})["image"]
    assert out.shape == (2, 32, 32, 3) and out.dtype == np.uint8


def test_preprocess_resize_matches_pillow_bilinear_within_rounding(
    exported_repo: ExportedRepo,
) -> None:
    from PIL import Image

    path = exported_repo.repo / "medcnn_preprocess" / "1" / "model.savedmodel"
    y, x = np.mgrid[0:96, 0:128]
    smooth = np.stack([x * 2, y * 2, (x + y)], axis=-1).clip(0, 255).astype(np.uint8)
    served = run_eager(path, {"image_bytes": np.array([[_encode(smooth, "PNG")]], dtype=object)})
    pillow = np.asarray(Image.fromarray(smooth).resize((32, 32), Image.Resampling.BILINEAR))
    diff = np.abs(served["image"][0].astype(int) - pillow.astype(int))
    assert diff.max() <= 2


def test_preprocess_model_raises_on_a_corrupt_image(exported_repo: ExportedRepo) -> None:
    from medserve.errors import VerificationError

    path = exported_repo.repo / "medcnn_preprocess" / "1" / "model.savedmodel"
    truncated = _encode(np.zeros((40, 40, 3), np.uint8), "PNG")[:30]
    with pytest.raises(VerificationError, match="InvalidArgument"):
        run_eager(path, {"image_bytes": np.array([[truncated]], dtype=object)})


def test_export_writes_the_next_free_version_and_force_replaces_one(
    exported_repo: ExportedRepo, repo_copy: Path
) -> None:
    second = exporter.export_model(exported_repo.model, repo_copy, exported_repo.spec)
    assert second.version == 2
    assert second.version_dir == repo_copy / "medcnn" / "2"
    assert (repo_copy / "medcnn_preprocess" / "2").is_dir()

    with pytest.raises(UsageError, match="already exists"):
        exporter.export_model(exported_repo.model, repo_copy, exported_repo.spec, version=2)

    before = (repo_copy / "medcnn" / "2" / "expected_io.npz").read_bytes()
    other = build_tiny_model(seed=1)
    replaced = exporter.export_model(other, repo_copy, exported_repo.spec, version=2, force=True)
    assert replaced.version == 2
    # Same fixed input batch, other weights: the recorded outputs changed.
    assert (repo_copy / "medcnn" / "2" / "expected_io.npz").read_bytes() != before
    assert _hidden_or_numeric(repo_copy / "medcnn") == ["1", "2"]


def test_a_failure_midway_leaves_no_version_and_no_temporary_directory(
    exported_repo: ExportedRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise OSError("disk full (simulated)")

    # The classifier version is fully staged by then; the decoder fails.
    monkeypatch.setattr(exporter, "write_preprocess_savedmodel", broken)
    repo = tmp_path / "repo"
    with pytest.raises(OSError, match="simulated"):
        exporter.export_model(exported_repo.model, repo, exported_repo.spec)
    for model in ("medcnn", "medcnn_preprocess"):
        assert _hidden_or_numeric(repo / model) == []
    assert not (repo / "medcnn" / "config.pbtxt").exists()


def test_a_failed_rename_of_the_decoder_rolls_back_the_classifier_version(
    exported_repo: ExportedRepo, repo_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from medserve import repository

    real_rename = os.rename

    def rename(src: str | Path, dst: str | Path) -> None:
        if Path(dst) == repo_copy / "medcnn_preprocess" / "2":
            raise OSError("rename failed (simulated)")
        real_rename(src, dst)

    monkeypatch.setattr(repository.os, "rename", rename)
    with pytest.raises(OSError, match="simulated"):
        exporter.export_model(exported_repo.model, repo_copy, exported_repo.spec)
    for model in ("medcnn", "medcnn_preprocess"):
        assert _hidden_or_numeric(repo_copy / model) == ["1"]


def _save(model: object, path: Path) -> Path:
    model.save(path)  # type: ignore[attr-defined]
    return path


def test_cli_verify_prints_one_line_per_check_of_the_cli_export(
    exported_repo: ExportedRepo, capsys: pytest.CaptureFixture
) -> None:
    assert main(["verify", str(exported_repo.repo)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any("TF1 session loader" in line for line in lines)
    assert any(line.startswith("ok  medcnn_encoded/config.pbtxt") for line in lines)
    assert lines[-1].startswith("verified medcnn version 1") and "checks passed" in lines[-1]


def _keras_model(kind: str) -> object:
    import keras

    if kind == "not_an_image":
        inputs = keras.Input(shape=(10,))
        outputs = keras.layers.Dense(2, activation="softmax")(inputs)
    else:  # "no_softmax": logits, not probabilities
        inputs = keras.Input(shape=(32, 32, 3))
        outputs = keras.layers.Dense(2)(keras.layers.Flatten()(inputs))
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "does not exist"),
        ("not_keras", "could not be loaded as a Keras model"),
        ("not_an_image", "expected an RGB image"),
        ("no_softmax", "softmax"),
        ("label_count", "model outputs 3 classes"),
        ("repo_is_file", "is a file"),
        ("existing_version", "already exists"),
        ("no_labels", "pass --labels a,b or --labels-file"),
        ("labels_file_missing", "cannot read --labels-file"),
    ],
)
def test_cli_export_reports_bad_input_with_exit_status_2(
    case: str,
    message: str,
    tmp_path: Path,
    exported_repo: ExportedRepo,
    capsys: pytest.CaptureFixture,
) -> None:
    model_path = tmp_path / "model.keras"
    repo = tmp_path / "repo"
    labels = "normal,nodule,effusion"
    if case == "not_keras":
        model_path.write_text("not a zip")
    elif case in ("not_an_image", "no_softmax"):
        _save(_keras_model(case), model_path)
        labels = "a,b"
    elif case != "missing":
        _save(exported_repo.model, model_path)
    if case == "label_count":
        labels = "a,b"
    if case == "repo_is_file":
        repo.write_text("")
    if case == "existing_version":
        repo = exported_repo.repo
    argv = ["export", str(model_path), "--repo", str(repo), "--labels", labels]
    if case == "no_labels":
        argv = argv[:-2]
    if case == "labels_file_missing":
        argv = [*argv[:-2], "--labels-file", str(tmp_path / "labels.txt")]
    if case == "existing_version":
        argv += ["--version", "1"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    if case != "existing_version":
        assert not (repo / "medcnn").exists()
