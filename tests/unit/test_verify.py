"""Specs of ``medserve verify``: it passes a fresh export and names each kind of damage."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format
from tiny_export import ExportedRepo
from tritonclient.grpc import model_config_pb2 as mc

from medserve.cli import main
from medserve.errors import UsageError, VerificationError
from medserve.repository import sha256_file
from medserve.verify import verify_repository

pytestmark = pytest.mark.slow


def _edit_config(path: Path, edit: Callable[[mc.ModelConfig], None]) -> None:
    config = text_format.Parse(path.read_text(), mc.ModelConfig())
    edit(config)
    path.write_text(text_format.MessageToString(config))


def test_verify_passes_a_fresh_export_with_one_check_per_line(
    exported_repo: ExportedRepo,
) -> None:
    report = verify_repository(exported_repo.repo, reference_model=exported_repo.model)
    assert report.version == 1
    lines = report.lines()
    assert all(line.startswith("ok  ") for line in lines)
    joined = "\n".join(lines)
    for subject in (
        "medcnn/config.pbtxt",
        "medcnn/configs/cpu.pbtxt",
        "medcnn/configs/local.pbtxt",
        "medcnn/1/model_card.json",
        "medcnn_preprocess/configs/local.pbtxt",
        "medcnn_encoded/config.pbtxt",
    ):
        assert f"ok  {subject}:" in joined
    assert "TF1 session loader vs Keras model" in joined


def test_verify_catches_a_tampered_weights_file(repo_copy: Path) -> None:
    weights = next((repo_copy / "medcnn" / "1" / "model.savedmodel" / "variables").glob("*.data*"))
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(VerificationError, match=r"variables\.data.*does not match its sha256"):
        verify_repository(repo_copy)


def test_verify_catches_a_file_the_model_card_does_not_list(repo_copy: Path) -> None:
    (repo_copy / "medcnn" / "1" / "notes.txt").write_text("stray")
    with pytest.raises(VerificationError, match=r"does not list: notes\.txt"):
        verify_repository(repo_copy)


def test_verify_catches_a_mismatched_input_tensor_name(repo_copy: Path) -> None:
    def rename(config: mc.ModelConfig) -> None:
        config.input[0].name = "input_1"

    _edit_config(repo_copy / "medcnn" / "configs" / "cpu.pbtxt", rename)
    with pytest.raises(VerificationError, match=r"cpu\.pbtxt: config inputs \['input_1'\]"):
        verify_repository(repo_copy)


def test_verify_explains_a_batch_dimension_in_dims(repo_copy: Path) -> None:
    def add_batch(config: mc.ModelConfig) -> None:
        config.input[0].dims.insert(0, -1)

    _edit_config(repo_copy / "medcnn" / "config.pbtxt", add_batch)
    with pytest.raises(VerificationError, match="must not include the batch dimension"):
        verify_repository(repo_copy)


def test_verify_catches_a_wrong_label_count(repo_copy: Path) -> None:
    labels = repo_copy / "medcnn" / "labels.txt"
    labels.write_text(labels.read_text() + "extra\n")
    with pytest.raises(VerificationError, match="has 4 labels but the model outputs 3"):
        verify_repository(repo_copy)


def test_verify_catches_an_ensemble_wired_to_a_missing_tensor(repo_copy: Path) -> None:
    def miswire(config: mc.ModelConfig) -> None:
        config.ensemble_scheduling.step[1].input_map["image"] = "nowhere"

    _edit_config(repo_copy / "medcnn_encoded" / "config.pbtxt", miswire)
    with pytest.raises(VerificationError, match="reads 'nowhere', which is undefined"):
        verify_repository(repo_copy)


def test_verify_catches_outputs_that_drift_from_the_recorded_ones(repo_copy: Path) -> None:
    # Rewrite the recording and its checksum consistently, so only the loader
    # comparison can notice that the SavedModel no longer gives these outputs.
    version_dir = repo_copy / "medcnn" / "1"
    with np.load(version_dir / "expected_io.npz") as data:
        arrays = {key: data[key] for key in data.files}
    arrays["probabilities"] = arrays["probabilities"] + np.float32(1e-3)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    (version_dir / "expected_io.npz").write_bytes(buffer.getvalue())
    card_path = version_dir / "model_card.json"
    card = json.loads(card_path.read_text())
    card["files"]["expected_io.npz"] = sha256_file(version_dir / "expected_io.npz")
    card_path.write_text(json.dumps(card))
    with pytest.raises(VerificationError, match=r"tf\.saved_model\.load output .* exceeds 1e-05"):
        verify_repository(repo_copy)


def test_verify_reports_a_missing_version_as_a_user_error(exported_repo: ExportedRepo) -> None:
    with pytest.raises(UsageError, match=r"has no version 7 \(found \[1\]\)"):
        verify_repository(exported_repo.repo, version=7)


def test_cli_verify_fails_with_exit_status_1_naming_the_file(
    repo_copy: Path, capsys: pytest.CaptureFixture
) -> None:
    (repo_copy / "medcnn_preprocess" / "configs" / "local.pbtxt").write_text("backend: 'python\n")
    assert main(["verify", str(repo_copy)]) == 1
    err = capsys.readouterr().err
    assert "local.pbtxt is not a valid Triton ModelConfig" in err
    assert "Traceback" not in err


def test_cli_verify_exits_2_on_user_errors_and_1_on_a_failed_check(
    tmp_path: Path, exported_repo: ExportedRepo, capsys: pytest.CaptureFixture
) -> None:
    # The repository, the model name or the version named does not exist: exit 2.
    assert main(["verify", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["verify", str(exported_repo.repo), "--name", "nope"]) == 2
    assert "pass --name" in capsys.readouterr().err
    assert main(["verify", str(exported_repo.repo), "--version", "7"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("medserve verify: error: ") and "has no version 7" in err
    assert "Traceback" not in err
