"""End-to-end training on tiny data: the files, the record, reuse, and bad input."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from medserve.cli import main
from medserve.data import write_synthetic_folder
from medserve.errors import UsageError
from medserve.training import TrainConfig, TrainResult, train
from medserve.training_record import record_matches

DOCUMENTED_KEYS = {
    "labels",
    "image_size",
    "class_counts",
    "skipped_files",
    "metrics",
    "epochs_run",
    "seed",
    "data_fingerprint",
    "tensorflow_version",
    "keras_version",
}


def _tiny(output: Path, **overrides: object) -> TrainConfig:
    settings: dict[str, object] = {
        "output": output,
        "image_size": (32, 32),
        "filters": (4, 8, 8),
        "dense_units": 8,
        "samples_per_class": 8,
        "epochs": 2,
        "batch_size": 8,
        "validation_split": 0.2,
        "verbose": 0,
    }
    settings.update(overrides)
    return TrainConfig(**settings)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    return train(_tiny(tmp_path_factory.mktemp("run") / "model"))


def test_train_writes_model_and_training_json_with_the_documented_keys(
    synthetic_run: TrainResult,
) -> None:
    import keras

    assert not synthetic_run.reused
    record = json.loads(synthetic_run.record_path.read_text())
    assert set(record) >= DOCUMENTED_KEYS
    assert record["labels"] == ["normal", "lesion"]
    assert record["image_size"] == [32, 32]
    assert record["class_counts"] == {
        "train": {"normal": 6, "lesion": 6},
        "validation": {"normal": 2, "lesion": 2},
    }
    assert record["skipped_files"] == 0
    assert set(record["metrics"]) == {"val_accuracy", "val_roc_auc", "val_loss"}
    assert 0.0 <= record["metrics"]["val_accuracy"] <= 1.0
    assert 0.0 <= record["metrics"]["val_roc_auc"] <= 1.0
    assert record["metrics"]["val_loss"] > 0.0
    assert 1 <= record["epochs_run"] <= 2
    assert record["seed"] == 0
    model = keras.models.load_model(synthetic_run.model_path)
    probabilities = model.predict(np.zeros((1, 32, 32, 3), np.float32), verbose=0)
    assert probabilities.shape == (1, 2)
    assert probabilities.sum() == pytest.approx(1.0, abs=1e-5)
    # No temporary files left next to the outputs.
    assert sorted(p.name for p in synthetic_run.model_path.parent.iterdir()) == [
        "model.keras",
        "reliability.png",
        "training.json",
    ]


def test_training_records_the_calibration_and_the_card_metrics_of_the_validation_split(
    synthetic_run: TrainResult,
) -> None:
    record = json.loads(synthetic_run.record_path.read_text())
    calibration = record["calibration"]
    assert calibration["samples"] == 4 and calibration["ece_bins"] == 15
    assert calibration["temperature"] > 0
    assert set(calibration["before"]) == set(calibration["after"]) == {"ece", "brier", "nll"}
    # The rule: never worse on validation than the raw model.
    assert calibration["after"]["ece"] <= calibration["before"]["ece"]
    assert calibration["applied"] == (calibration["temperature"] != 1.0)
    assert calibration["reliability_diagram"] == "reliability.png"
    assert (synthetic_run.model_path.parent / "reliability.png").read_bytes()[:4] == b"\x89PNG"
    report = record["validation_report"]
    assert report["samples"] == 4 and report["threshold"] == 0.5
    assert set(report["metrics"]) == {"roc_auc", "accuracy", "sensitivity", "specificity"}
    assert report["metrics"]["accuracy"]["value"] == record["metrics"]["val_accuracy"]


def test_second_run_with_the_same_settings_reuses_the_model(
    synthetic_run: TrainResult, caplog: pytest.LogCaptureFixture
) -> None:
    output = synthetic_run.model_path.parent
    before = synthetic_run.model_path.stat().st_mtime_ns
    with caplog.at_level(logging.INFO, logger="medserve"):
        again = train(_tiny(output))
    assert again.reused
    assert synthetic_run.model_path.stat().st_mtime_ns == before
    assert "reusing" in caplog.text
    assert again.record == json.loads(synthetic_run.record_path.read_text())


def test_a_changed_hyperparameter_trains_again_and_a_tampered_model_is_not_reused(
    synthetic_run: TrainResult, tmp_path: Path
) -> None:
    output = tmp_path / "copy"
    output.mkdir()
    for path in (synthetic_run.model_path, synthetic_run.record_path):
        (output / path.name).write_bytes(path.read_bytes())
    assert train(_tiny(output)).reused
    changed = train(_tiny(output, learning_rate=5e-3, epochs=1))
    assert not changed.reused
    assert changed.record["hyperparameters"]["learning_rate"] == 5e-3
    # A model file that no longer matches its record is never reused.
    fingerprint = changed.record["run_fingerprint"]
    assert record_matches(output, fingerprint)
    with (output / "model.keras").open("ab") as handle:
        handle.write(b"\0")
    assert not record_matches(output, fingerprint)


def test_train_on_a_folder_counts_the_skipped_file(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_synthetic_folder(data, 5, (32, 32), seed=1, formats=("png", "jpeg", "dcm"))
    (data / "lesion" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    result = train(_tiny(tmp_path / "model", samples_per_class=None, data_dir=data, epochs=1))
    record = result.record
    assert record["labels"] == ["lesion", "normal"]  # sorted folder names
    assert record["skipped_files"] == 1
    assert record["skipped_file_names"] == ["lesion/broken.png"]
    assert record["class_counts"]["validation"] == {"lesion": 1, "normal": 1}
    assert record["data_source"]["kind"] == "folder"


def test_fine_tuning_a_model_with_the_wrong_class_count_is_a_usage_error(tmp_path: Path) -> None:
    from medserve.model import build_reference_cnn

    three = tmp_path / "three.keras"
    build_reference_cnn((32, 32, 3), 3, filters=(2, 2, 2), dense_units=4).save(three)
    with pytest.raises(UsageError, match="outputs 3 classes"):
        train(_tiny(tmp_path / "out", base_model=three, filters=(4, 8, 8), image_size=None))


def test_cli_reports_a_missing_data_folder_with_exit_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["train", "--data", str(tmp_path / "nope"), "--output", str(tmp_path / "o")])
    assert status == 2
    assert "nope" in capsys.readouterr().err


def test_cli_rejects_an_output_that_is_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "file").write_text("x")
    status = main(["train", "--synthetic", "--output", str(tmp_path / "file")])
    assert status == 2
    assert "is a file" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"validation_split": 1.0}, "validation_split"),
        ({"epochs": 0}, "epochs"),
        ({"image_size": (16, 16), "filters": (4, 8, 8)}, "too small"),
        ({"samples_per_class": 4, "data_dir": Path("x")}, "synthetic"),
    ],
)
def test_bad_settings_are_usage_errors_naming_the_field(
    tmp_path: Path, overrides: dict[str, object], field: str
) -> None:
    with pytest.raises(UsageError, match=field):
        _tiny(tmp_path, **overrides)


def test_the_synthetic_set_holds_out_more_for_calibration_than_a_folder(tmp_path: Path) -> None:
    synthetic = TrainConfig(output=tmp_path)
    folder = TrainConfig(output=tmp_path, data_dir=tmp_path)
    assert synthetic.resolved_validation_split() == 0.6
    assert folder.resolved_validation_split() == 0.2
    assert synthetic.hyperparameters()["validation_split"] == 0.6
    assert TrainConfig(output=tmp_path, validation_split=0.3).resolved_validation_split() == 0.3
