"""Specs of the ``<name>_explain`` model: layout, configs under every name, graph, verify."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tiny_export import ExportedRepo
from tritonclient.grpc import model_config_pb2 as mc

from medserve.errors import UsageError, VerificationError
from medserve.explain.artifact import check_explain_savedmodel
from medserve.explain.gradcam import explain_images, gradcam_parts
from medserve.loaders import run_eager, run_session
from medserve.model_config import (
    CONFIG_KINDS,
    EXPLAIN_CONFIG_KINDS,
    INT8_KINDS,
    config_path,
    parse_config,
)
from medserve.spec import SAVEDMODEL_DIRNAME
from medserve.verify import verify_repository

pytestmark = pytest.mark.slow


def _noise_images(count: int, size: tuple[int, int], seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(count, *size, 3), dtype=np.uint8)


def test_export_writes_the_explain_model_with_a_config_for_every_config_name(
    exported_repo: ExportedRepo,
) -> None:
    repo, spec = exported_repo.repo, exported_repo.spec
    explain_dir = repo / spec.explain_name
    assert (explain_dir / "1" / SAVEDMODEL_DIRNAME / "saved_model.pb").is_file()
    assert (explain_dir / "1" / "model.py").is_file()
    assert (explain_dir / "labels.txt").read_text().splitlines() == list(spec.labels)
    # Triton refuses to start if any model fails to load: every config name the
    # classifier offers exists for the explain model too, or is one that the
    # deployments of that name leave the explain model out of (test_policy_triton).
    classifier_names = {p.stem for p in (repo / spec.name / "configs").glob("*.pbtxt")}
    explain_names = {p.stem for p in (explain_dir / "configs").glob("*.pbtxt")}
    # This export has no model_int8.onnx, so no INT8 config (test_int8_export has them).
    assert explain_names == {
        kind for kind in EXPLAIN_CONFIG_KINDS if kind != "gpu" and kind not in INT8_KINDS
    }
    assert classifier_names - explain_names <= set(CONFIG_KINDS) - set(EXPLAIN_CONFIG_KINDS)
    assert (explain_dir / "config.pbtxt").is_file()


@pytest.mark.parametrize("kind", [k for k in EXPLAIN_CONFIG_KINDS if k not in INT8_KINDS])
def test_explain_config_has_the_classifier_queue_bounds_and_the_class_index_input(
    exported_repo: ExportedRepo, kind: str
) -> None:
    spec = exported_repo.spec
    explain = parse_config(config_path(exported_repo.repo / spec.explain_name, kind))  # type: ignore[arg-type]
    classifier = parse_config(config_path(exported_repo.repo / spec.name, kind))  # type: ignore[arg-type]
    assert explain.name == spec.explain_name
    assert explain.max_batch_size == classifier.max_batch_size
    assert explain.dynamic_batching == classifier.dynamic_batching
    assert (explain.platform, explain.backend) == (classifier.platform, classifier.backend)
    inputs = {t.name: (t.data_type, list(t.dims)) for t in explain.input}
    assert inputs == {
        spec.input_name: (mc.TYPE_UINT8, list(spec.input_shape)),
        spec.class_index_name: (mc.TYPE_INT32, [1]),
    }
    outputs = {t.name: (t.data_type, list(t.dims)) for t in explain.output}
    assert outputs == {
        spec.output_name: (mc.TYPE_FP32, [spec.num_classes]),
        spec.heatmap_name: (mc.TYPE_FP32, list(spec.image_size)),
    }
    assert not explain.optimization.execution_accelerators.gpu_execution_accelerator


def test_explain_savedmodel_matches_in_process_gradcam_through_the_session_loader(
    exported_repo: ExportedRepo,
) -> None:
    spec = exported_repo.spec
    path = exported_repo.repo / spec.explain_name / "1" / SAVEDMODEL_DIRNAME
    images = _noise_images(5, spec.image_size)
    indices = np.array([-1, 0, 1, 2, -1], dtype=np.int32)
    feeds = {spec.input_name: images, spec.class_index_name: indices[:, None]}
    probabilities, heatmaps = explain_images(gradcam_parts(exported_repo.model), images, indices)
    assert heatmaps.shape == (5, *spec.image_size)
    assert np.all(heatmaps >= 0) and np.all(heatmaps <= 1)
    for outputs in (run_eager(path, feeds), run_session(path, feeds)):
        np.testing.assert_allclose(outputs[spec.heatmap_name], heatmaps, atol=1e-4)
        np.testing.assert_allclose(outputs[spec.output_name], probabilities, atol=1e-5)
    # The served probabilities are the classifier's.
    keras_probabilities = exported_repo.model(images.astype(np.float32) / 255.0)
    np.testing.assert_allclose(probabilities, keras_probabilities, atol=1e-6)


def test_explain_graph_refuses_a_class_index_that_does_not_exist(
    exported_repo: ExportedRepo,
) -> None:
    spec = exported_repo.spec
    path = exported_repo.repo / spec.explain_name / "1" / SAVEDMODEL_DIRNAME
    feeds = {
        spec.input_name: _noise_images(1, spec.image_size),
        spec.class_index_name: np.array([[spec.num_classes]], dtype=np.int32),
    }
    with pytest.raises(VerificationError, match="class_index must be -1"):
        run_eager(path, feeds)
    with pytest.raises(UsageError, match="class index 3 does not exist"):
        explain_images(gradcam_parts(exported_repo.model), feeds[spec.input_name], 3)


def test_verify_reports_the_explain_checks_and_catches_a_tampered_recording(
    exported_repo: ExportedRepo, repo_copy: Path
) -> None:
    report = verify_repository(exported_repo.repo)
    explain_lines = [line for line in report.lines() if "medcnn_explain" in line]
    assert any("TF1 session loader vs in-process Grad-CAM" in line for line in explain_lines)
    assert sum("configs/" in line or "config.pbtxt" in line for line in explain_lines) == 3

    spec = exported_repo.spec
    version_dir = repo_copy / spec.explain_name / "1"
    with np.load(version_dir / "expected_io.npz") as data:
        arrays = {key: data[key] for key in data.files}
    arrays[spec.heatmap_name] = 1.0 - arrays[spec.heatmap_name]
    np.savez(version_dir / "expected_io.npz", **arrays)
    with pytest.raises(VerificationError, match="differs from the in-process Grad-CAM"):
        check_explain_savedmodel(version_dir, spec)
    with pytest.raises(VerificationError, match="sha256"):
        verify_repository(repo_copy)


def test_explain_config_that_loses_the_queue_bounds_fails_verify(repo_copy: Path) -> None:
    from medserve.model_config import to_text

    path = repo_copy / "medcnn_explain" / "configs" / "local.pbtxt"
    config = parse_config(path)
    config.dynamic_batching.default_queue_policy.max_queue_size = 7
    path.write_text(to_text(config))
    with pytest.raises(VerificationError, match="queue policy must equal the classifier"):
        verify_repository(repo_copy)
