"""Calibration end to end: an over-confident model, its temperature in the exported graph,
the reliability diagram and the rendered model card with the explanation figures.

One over-confident model is trained per module: a small reference CNN fitted
for many epochs, with no early stopping, on 60 synthetic images of which a
fifth carry the other class's label (readers disagree on real scans too). It
memorises the training set, so on new images it is sure of itself and wrong
about a quarter of the time. The temperature is fitted on a separate
validation set with the same label noise and checked on a third, held-out set,
through the exported SavedModel.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from medserve.calibration import expected_calibration_error, temperature_scale
from medserve.cli import main
from medserve.errors import VerificationError

pytestmark = pytest.mark.slow

SIZE = (32, 32)
LABEL_NOISE = 0.2
EPOCHS = 60


@dataclass(frozen=True)
class CalibratedExport:
    model: Any
    assessment: dict[str, Any]
    explanation: dict[str, Any]
    training_dir: Path
    repo: Path
    version_dir: Path


def _noisy_set(count_per_class: int, seed: int) -> Any:
    """Synthetic images whose labels are flipped with probability LABEL_NOISE."""
    from dataclasses import replace

    from medserve.data import synthetic_dataset

    data = synthetic_dataset(count_per_class, SIZE, seed=seed)
    flip = np.random.default_rng(seed).random(len(data)) < LABEL_NOISE
    return replace(data, labels=np.where(flip, 1 - data.labels, data.labels))


@pytest.fixture(scope="module")
def calibrated_export(tmp_path_factory: pytest.TempPathFactory) -> CalibratedExport:
    import keras

    from medserve.assessment import assess
    from medserve.explain.evaluation import evaluate_explanations
    from medserve.exporter import export_model
    from medserve.model import build_reference_cnn
    from medserve.spec import ModelSpec

    work = tmp_path_factory.mktemp("calibration")
    train_set, validation_set = _noisy_set(30, seed=1), _noisy_set(100, seed=2)
    model = build_reference_cnn((*SIZE, 3), 2, filters=(8, 16), dense_units=32, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    model.fit(
        train_set.images.astype(np.float32) / 255.0,
        train_set.labels,
        batch_size=8,
        epochs=EPOCHS,
        shuffle=True,
        verbose=0,
    )
    training_dir = work / "model"
    training_dir.mkdir()
    assessment = assess(model, validation_set, training_dir, batch_size=32)
    summary = {"labels": ["normal", "lesion"], "image_size": list(SIZE), **assessment}
    explanation = evaluate_explanations(model, lesion_images=6, seed=2027).to_json()
    repo = work / "model_repository"
    spec = ModelSpec(labels=("normal", "lesion"), image_size=SIZE, max_batch_size=8)
    result = export_model(model, repo, spec, training_summary=summary, explanation=explanation)
    return CalibratedExport(model, assessment, explanation, training_dir, repo, result.version_dir)


def test_temperature_scaling_in_every_exported_graph_halves_the_ece_on_held_out_images(
    calibrated_export: CalibratedExport,
) -> None:
    import onnxruntime

    from medserve.loaders import run_eager, run_session

    calibration = calibrated_export.assessment["calibration"]
    assert calibration["applied"] and calibration["temperature"] > 1.0  # over-confident
    held_out = _noisy_set(150, seed=3)
    feeds = {"image": held_out.images}
    raw = np.asarray(
        calibrated_export.model(held_out.images.astype(np.float32) / 255.0, training=False),
        dtype=np.float64,
    )
    savedmodel = calibrated_export.version_dir / "model.savedmodel"
    onnx = onnxruntime.InferenceSession(str(calibrated_export.version_dir / "model.onnx"))
    served_by = {
        "tf.saved_model.load": run_eager(savedmodel, feeds)["probabilities"],
        "TF1 session (Triton's TF backend)": run_session(savedmodel, feeds)["probabilities"],
        "onnxruntime": onnx.run(["probabilities"], feeds)[0],
    }
    ece_raw = expected_calibration_error(held_out.labels, raw)
    for runtime, probabilities in served_by.items():
        served = np.asarray(probabilities, dtype=np.float64)
        np.testing.assert_allclose(
            served, temperature_scale(raw, calibration["temperature"]), atol=1e-5, err_msg=runtime
        )
        ece_served = expected_calibration_error(held_out.labels, served)
        assert ece_served <= ece_raw / 2, (runtime, ece_raw, ece_served)


def test_training_side_writes_the_reliability_diagram_and_export_copies_it(
    calibrated_export: CalibratedExport,
) -> None:
    png = b"\x89PNG\r\n\x1a\n"
    beside_model = calibrated_export.training_dir / "reliability.png"
    beside_card = calibrated_export.version_dir / "reliability.png"
    assert beside_model.read_bytes().startswith(png)
    assert beside_card.read_bytes().startswith(png)
    card = json.loads((calibrated_export.version_dir / "model_card.json").read_text())
    assert "reliability.png" in card["files"]
    assert (
        card["calibration"]["temperature"]
        == calibrated_export.assessment["calibration"]["temperature"]
    )


def test_export_renders_the_clinical_card_with_the_measured_figures(
    calibrated_export: CalibratedExport,
) -> None:
    text = (calibrated_export.version_dir / "model_card.md").read_text()
    calibration = calibrated_export.assessment["calibration"]
    report = calibrated_export.assessment["validation_report"]
    for heading in (
        "## Intended use",
        "## Not intended for",
        "## Training data",
        "## Validation metrics",
        "## Calibration",
        "## Explanation quality",
        "## Provenance",
        "## Known limitations",
    ):
        assert heading in text
    assert f"**T = {calibration['temperature']:.3f}**" in text
    assert f"| before | {calibration['before']['ece']:.3f} |" in text
    low, high = report["metrics"]["sensitivity"]["ci95"]
    value = report["metrics"]["sensitivity"]["value"]
    assert f"| sensitivity | {value:.3f} | {low:.3f} to {high:.3f} |" in text
    assert "threshold 0.5" in text
    assert "![Reliability diagram](reliability.png)" in text
    game = calibrated_export.explanation["pointing_game"]
    assert f"- Pointing game: {game['hits']}/{game['total']} = {game['accuracy']:.3f}" in text
    sanity = calibrated_export.explanation["sanity_check"]
    assert f"median Spearman correlation {sanity['spearman_median']:.3f}" in text
    assert "never a diagnosis" in text


def test_verify_rejects_a_stale_card_and_medserve_card_renders_it_again(
    calibrated_export: CalibratedExport, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from medserve.verify import verify_repository

    repo = tmp_path / "repo"
    shutil.copytree(calibrated_export.repo, repo)
    markdown = repo / "medcnn" / "1" / "model_card.md"
    markdown.write_text(markdown.read_text().replace("sensitivity", "sensitivity (edited)"))
    with pytest.raises(VerificationError, match=r"model_card\.md does not match.*medserve card"):
        verify_repository(repo)
    assert main(["card", str(repo)]) == 0
    assert "model_card.md" in capsys.readouterr().out
    report = verify_repository(repo)
    assert any("model_card.md" in line for line in report.lines())


def test_export_cli_leaves_out_an_explanation_report_of_another_training_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from medserve.cli.export import read_explanation

    model_path = tmp_path / "model.keras"
    report = tmp_path / "explanation.json"
    report.write_text(json.dumps({"pointing_game": {}, "training_run": "old"}))
    assert read_explanation(model_path, {"run_fingerprint": "new"}) is None
    assert "measured for another training run" in caplog.text
    assert read_explanation(model_path, {"run_fingerprint": "old"}) is not None
    report.write_text(json.dumps({"pointing_game": {}}))  # `medserve evaluate` names no run
    assert read_explanation(model_path, None) == {"pointing_game": {}}
    report.unlink()
    assert read_explanation(model_path, None) is None


def test_export_cli_refuses_a_temperature_fitted_for_another_model_file(
    calibrated_export: CalibratedExport, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model_path = tmp_path / "model.keras"
    calibrated_export.model.save(model_path)
    record = {
        "labels": ["normal", "lesion"],
        "calibration": calibrated_export.assessment["calibration"],
        "model_sha256": "0" * 64,  # the record of some other model file
    }
    (tmp_path / "training.json").write_text(json.dumps(record))
    status = main(["export", str(model_path), "--repo", str(tmp_path / "repo")])
    assert status == 2
    assert "was written for another model file" in capsys.readouterr().err
    assert not (tmp_path / "repo" / "medcnn").exists()


def test_demo_prints_the_calibration_figure_of_a_training_record(
    calibrated_export: CalibratedExport,
) -> None:
    from medserve.demo import calibration_line

    calibration = calibrated_export.assessment["calibration"]
    line = calibration_line({"calibration": calibration}, calibrated_export.training_dir)
    assert f"T = {calibration['temperature']:.3f}, applied in the served graph" in line
    before, after = calibration["before"]["ece"], calibration["after"]["ece"]
    assert f"ECE (15 bins) {before:.4f} -> {after:.4f}" in line
    assert str(calibrated_export.training_dir / "reliability.png") in line
    assert "not measured" in calibration_line({}, calibrated_export.training_dir)


def test_card_cli_names_a_repository_without_versions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["card", str(tmp_path)]) == 2
    assert "has no exported version; run `medserve export` first" in capsys.readouterr().err


def test_figures_added_to_a_written_card_keep_its_checksums_and_reach_the_markdown(
    calibrated_export: CalibratedExport, tmp_path: Path
) -> None:
    from medserve.model_card import update_model_card
    from medserve.model_card_render import write_card_markdown
    from medserve.verify import verify_repository

    repo = tmp_path / "repo"
    shutil.copytree(calibrated_export.repo, repo)
    version_dir = repo / "medcnn" / "1"
    figures = dict(calibrated_export.explanation)
    figures["pointing_game"] = {**figures["pointing_game"], "hits": 5, "total": 6}
    update_model_card(version_dir, {"explanation_quality": figures})
    with pytest.raises(VerificationError, match=r"model_card\.md does not match"):
        verify_repository(repo)
    write_card_markdown(version_dir)
    verify_repository(repo)  # checksums unchanged, rendering current
    assert "- Pointing game: 5/6 = " in (version_dir / "model_card.md").read_text()
