"""A small trained model exported with ``--int8``, shared by the unit and integration tests.

Usage::

    exported = train_and_export_int8(tmp_path_factory.mktemp("int8"))
    exported.repo / "medcnn" / "1" / "model_int8.onnx"

A module of its own (not ``conftest``), like ``tiny_export``. The INT8 gate
needs a model that classifies: an untrained one answers near 50/50 and any
rounding flips it, so this trains the reference CNN on the synthetic set at
32x32 (about 30 s on two shared cores; accuracy about 0.9 on 40 validation
images) and exports it through the CLI, as a user would.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

INT8_SIZE = (32, 32)
INT8_MAX_BATCH = 8


@dataclass(frozen=True)
class Int8Export:
    """A repository written by ``medserve export --int8`` and the run it came from.

    Attributes:
        repo: The model repository (version 1).
        model_path: The trained ``model.keras`` (``training.json`` beside it).
        spec: The exported model's spec.
        train_set: The run's training split (what calibrated the INT8 model).
        validation_set: The run's validation split (what gated it).
    """

    repo: Path
    model_path: Path
    spec: Any
    train_set: Any
    validation_set: Any


def train_and_export_int8(work: Path) -> Int8Export:
    """Train the small model into ``work/model`` and export it with --int8 into ``work/repo``."""
    import json

    from medserve.cli import main
    from medserve.spec import ModelSpec
    from medserve.training import TrainConfig, train
    from medserve.training_data import split_of_record

    result = train(
        TrainConfig(
            output=work / "model",
            image_size=INT8_SIZE,
            samples_per_class=40,
            validation_split=0.5,
            epochs=10,
            filters=(4, 8, 8),
            dense_units=16,
            learning_rate=1e-3,
            verbose=0,
        )
    )
    repo = work / "repo"
    argv = ["export", str(result.model_path), "--repo", str(repo), "--int8"]
    status = main([*argv, "--max-batch-size", str(INT8_MAX_BATCH)])
    assert status == 0, "the INT8 fixture export failed; run it by hand to see why"
    record = json.loads(result.record_path.read_text())
    train_set, validation_set = split_of_record(record, result.model_path.parent)
    spec = ModelSpec(
        labels=tuple(record["labels"]), image_size=INT8_SIZE, max_batch_size=INT8_MAX_BATCH
    )
    return Int8Export(repo, result.model_path, spec, train_set, validation_set)
