"""Files of a training run: ``model.keras``, ``training.json``, written atomically.

Usage::

    fingerprint = run_fingerprint(data_fingerprint="ab12...", hyperparameters={...})
    record = read_record(output_dir)            # None when absent or unreadable
    write_json_atomic(output_dir / TRAINING_FILENAME, record)

``training.json`` is written last, after ``model.keras`` is in place, and holds
the sha256 of that model file: a reader (the exporter, or the reuse check of
the next run) can trust that the two belong together. Each file is written to
a temporary name in the same folder and renamed, so an interrupted run never
leaves half a file under the real name.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

import medserve
from medserve.data.synthetic import GENERATOR_VERSION
from medserve.repository import sha256_file, write_text_atomic

if TYPE_CHECKING:
    from medserve.data import LabelledImages
    from medserve.training import TrainConfig

log = logging.getLogger(__name__)

MODEL_FILENAME = "model.keras"
TRAINING_FILENAME = "training.json"


def run_fingerprint(*, data_fingerprint: str, hyperparameters: Mapping[str, Any]) -> str:
    """sha256 of everything that decides the trained model: data, settings, code version."""
    payload = {
        "medserve_version": medserve.__version__,
        "data": data_fingerprint,
        "hyperparameters": dict(hyperparameters),
    }
    return sha256_text(json.dumps(payload, sort_keys=True, default=str))


def sha256_text(text: str) -> str:
    """Hex sha256 of a UTF-8 string."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def read_record(directory: Path) -> dict[str, Any] | None:
    """The ``training.json`` of ``directory``, or None when missing or not valid JSON."""
    path = directory / TRAINING_FILENAME
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable %s (%s); the model will be trained again", path, exc)
        return None
    return record if isinstance(record, dict) else None


def record_matches(directory: Path, fingerprint: str) -> bool:
    """True when ``directory`` holds a model trained with exactly this fingerprint."""
    record = read_record(directory)
    model = directory / MODEL_FILENAME
    if record is None or record.get("run_fingerprint") != fingerprint or not model.is_file():
        return False
    # The model file must be the one this record was written for.
    return record.get("model_sha256") == sha256_file(model)


def write_json_atomic(path: Path, document: Mapping[str, Any]) -> None:
    """Write ``document`` as indented JSON; NaN becomes null (JSON has no NaN)."""
    write_text_atomic(path, json.dumps(_finite(document), indent=2, sort_keys=True) + "\n")


def save_model_atomic(model: Any, path: Path) -> None:
    """``model.save`` to a temporary ``.keras`` file next to ``path``, then rename."""
    _write_atomic(path, model.save)


def _write_atomic(path: Path, write: Callable[[Path], object]) -> None:
    # Same folder, so the rename is atomic; Keras insists on the .keras suffix.
    handle, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(handle)
    temporary = Path(name)
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def build_record(
    *,
    assessment: Mapping[str, Any],
    data: LabelledImages,
    train_set: LabelledImages,
    validation_set: LabelledImages,
    metrics: dict[str, float],
    history: dict[str, list[float]],
    config: TrainConfig,
    hyperparameters: dict[str, Any],
    data_fingerprint: str,
    fingerprint: str,
    model_sha256: str,
    duration_s: float,
) -> dict[str, Any]:
    """The content of ``training.json`` (documented keys first, extras after).

    ``assessment`` is :func:`medserve.assessment.assess`'s result: its
    ``calibration`` and ``validation_report`` sections are recorded as they are.
    """
    import keras
    import tensorflow as tf

    import medserve

    val_losses = history.get("val_loss", [])
    return {
        "labels": list(data.label_names),
        "image_size": list(data.image_size),
        "class_counts": {
            "train": train_set.class_counts(),
            "validation": validation_set.class_counts(),
        },
        "skipped_files": len(data.skipped_files),
        "metrics": metrics,
        "epochs_run": len(history.get("loss", [])),
        "seed": config.seed,
        "data_fingerprint": data_fingerprint,
        "tensorflow_version": tf.__version__,
        "keras_version": keras.__version__,
        # Extras: enough to tell later what was trained, and to reuse it.
        "best_epoch": int(np.argmin(val_losses)) + 1 if val_losses else None,
        "history": {k: [float(v) for v in values] for k, values in history.items()},
        "data_source": _describe_source(config),
        "skipped_file_names": list(data.skipped_files),
        "hyperparameters": hyperparameters,
        "run_fingerprint": fingerprint,
        "model_file": MODEL_FILENAME,
        "model_sha256": model_sha256,
        "medserve_version": medserve.__version__,
        "train_duration_s": round(duration_s, 1),
        "calibration": assessment["calibration"],
        "validation_report": assessment["validation_report"],
    }


def _describe_source(config: TrainConfig) -> dict[str, Any]:
    if config.data_dir is not None:
        source: dict[str, Any] = {"kind": "folder", "path": str(config.data_dir)}
    else:
        source = {
            "kind": "synthetic",
            "samples_per_class": config.resolved_samples_per_class(),
            "generator_version": GENERATOR_VERSION,
        }
    if config.base_model is not None:
        source["base_model"] = str(config.base_model)
    return source
