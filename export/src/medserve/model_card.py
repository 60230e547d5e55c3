"""``model_card.json``: what a version is, where it came from, and its checksums.

Usage::

    card = build_model_card(model, spec, version=3, training_summary=summary)
    write_model_card(version_dir, card)       # adds the sha256 of every file
    card = read_model_card(version_dir)
    update_model_card(version_dir, {"explanation_quality": figures})   # keeps the sums

The card is written last, after every other file of the version, and lists
the sha256 of each of them (not of itself), so ``medserve verify`` can tell a
tampered or truncated file from the one that was exported.
"""

from __future__ import annotations

import datetime as dt
import json
import platform
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medserve import __version__
from medserve.errors import VerificationError
from medserve.repository import file_checksums, write_text_atomic
from medserve.spec import MODEL_CARD_FILENAME, MODEL_CARD_MARKDOWN_FILENAME, ModelSpec

if TYPE_CHECKING:
    import keras

CARD_FORMAT = 1
# The card and its rendering: every other file of a version is checksummed.
CARD_FILES = (MODEL_CARD_FILENAME, MODEL_CARD_MARKDOWN_FILENAME)


def build_model_card(
    model: keras.Model | None,
    spec: ModelSpec,
    *,
    version: int,
    role: str,
    training_summary: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Describe one exported version (without checksums, see :func:`write_model_card`).

    Args:
        model: The Keras classifier, or ``None`` for the weightless decoder.
        spec: Input size, tensor names and labels.
        version: The version number being written.
        role: ``"classifier"`` or ``"preprocess"``.
        training_summary: Contents of ``training.json`` written by
            ``medserve train``, if any: class counts and validation metrics.
        extra: More fields to record (serving options, expected-output file).
    """
    import keras
    import numpy as np
    import tensorflow as tf

    summary = training_summary or {}
    card: dict[str, Any] = {
        "format": CARD_FORMAT,
        "model": spec.name,
        "role": role,
        "version": version,
        "input": {
            "name": spec.input_name,
            "dtype": "UINT8",
            "shape": [-1, *spec.input_shape],
            "encoded_name": spec.encoded_input_name,
        },
        "output": {"name": spec.output_name, "dtype": "FP32", "shape": [-1, spec.num_classes]},
        "labels": list(spec.labels),
        "class_counts": summary.get("class_counts"),
        "metrics": summary.get("metrics"),
        "training_data": _training_data(summary) if summary else None,
        # Bootstrap intervals on the served (calibrated) probabilities.
        "validation_report": summary.get("validation_report"),
        # Ties the version to its training run, so `make demo` exports only when
        # the model changed (training.json's fingerprint of data + settings).
        "training_run": summary.get("run_fingerprint"),
        "exported_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "source_commit": _source_commit(),
        "versions": {
            "medserve": __version__,
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
    }
    if model is not None:
        card["architecture"] = _architecture(model)
    if extra:
        card.update(extra)
    return card


def write_model_card(version_dir: Path, card: dict[str, Any]) -> dict[str, Any]:
    """Add the sha256 of every file in ``version_dir`` to ``card`` and write it.

    Returns:
        The card as written, with its ``files`` mapping.
    """
    card = dict(card)
    card["files"] = file_checksums(version_dir, exclude=CARD_FILES)
    write_text_atomic(version_dir / MODEL_CARD_FILENAME, json.dumps(card, indent=2) + "\n")
    return card


def update_model_card(version_dir: Path, fields: dict[str, Any]) -> dict[str, Any]:
    """Replace top-level ``fields`` of a written card, keeping its checksum table.

    For figures measured after the export (``medserve evaluate``'s): the card
    does not checksum itself, so the version's files stay verified.

    Raises:
        VerificationError: The card is missing or unreadable.
    """
    card = {**read_model_card(version_dir), **fields}
    write_text_atomic(version_dir / MODEL_CARD_FILENAME, json.dumps(card, indent=2) + "\n")
    return card


def read_model_card(version_dir: Path) -> dict[str, Any]:
    """Read the card of a version.

    Raises:
        VerificationError: The card is missing or not a JSON object with ``files``.
    """
    path = version_dir / MODEL_CARD_FILENAME
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise VerificationError(f"cannot read model card {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise VerificationError(f"model card {path} is not valid JSON: {exc}") from exc
    if not isinstance(card, dict) or not isinstance(card.get("files"), dict):
        raise VerificationError(f"model card {path} has no 'files' checksum table")
    return card


def _training_data(summary: dict[str, Any]) -> dict[str, Any]:
    """What the model was trained on, from ``training.json``."""
    return {
        "source": summary.get("data_source"),
        "image_size": summary.get("image_size"),
        "class_counts": summary.get("class_counts"),
        "skipped_files": summary.get("skipped_files"),
        "data_fingerprint": summary.get("data_fingerprint"),
        "epochs_run": summary.get("epochs_run"),
        "best_epoch": summary.get("best_epoch"),
        "hyperparameters": summary.get("hyperparameters"),
        "model_sha256": summary.get("model_sha256"),
        "trained_with": {
            "medserve": summary.get("medserve_version"),
            "tensorflow": summary.get("tensorflow_version"),
            "keras": summary.get("keras_version"),
        },
    }


def _architecture(model: keras.Model) -> dict[str, Any]:
    """Layer-by-layer summary: class, name, output shape and parameter count."""
    layers = []
    for layer in model.layers:
        try:
            shape = list(layer.output.shape)
        except (AttributeError, ValueError):
            shape = None
        layers.append(
            {
                "name": layer.name,
                "class": type(layer).__name__,
                "output_shape": shape,
                "params": int(layer.count_params()),
            }
        )
    return {
        "name": model.name,
        "total_params": int(model.count_params()),
        "layers": layers,
    }


def _source_commit() -> str | None:
    """The git commit of the working directory, if it is a git checkout."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = result.stdout.strip()
    return commit if result.returncode == 0 and commit else None
