"""Shared fixtures of the unit tests.

Usage::

    def test_something(exported_repo: ExportedRepo) -> None:
        assert (exported_repo.repo / "medcnn" / "1").is_dir()

``exported_repo`` exports one tiny classifier once per session through the
``medserve export`` CLI (32x32 inputs, filters (4, 8, 8), dense 16), so the
export and verify tests share one real SavedModel; tests that change files
work on ``repo_copy``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from tiny_export import TINY_LABELS, TINY_MAX_BATCH, TINY_SIZE, ExportedRepo, build_tiny_model


@pytest.fixture(scope="session")
def exported_repo(tmp_path_factory: pytest.TempPathFactory) -> ExportedRepo:
    """One tiny model saved as ``.keras`` and exported through the CLI (version 1)."""
    from medserve.cli import main
    from medserve.model import load_classifier
    from medserve.spec import ModelSpec

    work = tmp_path_factory.mktemp("exported")
    model_path = work / "model.keras"
    build_tiny_model().save(model_path)
    # What `medserve train` writes next to the model (test data, not a result).
    summary = {
        "labels": list(TINY_LABELS),
        "image_size": list(TINY_SIZE),
        "class_counts": {"train": {"normal": 5, "nodule": 4, "effusion": 3}},
        "metrics": {"val_accuracy": 0.5, "val_roc_auc": 0.5, "val_loss": 1.0},
    }
    (work / "training.json").write_text(json.dumps(summary))
    repo = work / "model_repository"
    argv = ["export", str(model_path), "--repo", str(repo)]
    status = main([*argv, "--max-batch-size", str(TINY_MAX_BATCH)])
    assert status == 0, "the fixture export failed; run it by hand to see why"
    spec = ModelSpec(labels=TINY_LABELS, image_size=TINY_SIZE, max_batch_size=TINY_MAX_BATCH)
    return ExportedRepo(
        repo=repo, model_path=model_path, spec=spec, model=load_classifier(model_path)
    )


@pytest.fixture
def repo_copy(exported_repo: ExportedRepo, tmp_path: Path) -> Path:
    """A private copy of the exported repository that a test may damage."""
    target = tmp_path / "model_repository"
    shutil.copytree(exported_repo.repo, target)
    return target
