"""What an export was made from, so that exporting the same thing again writes nothing.

Usage::

    inputs = export_inputs(model_path, options={"formats": "savedmodel,onnx", ...},
                           labels=("normal", "lesion"))
    result = export_model(..., export_inputs=inputs)        # recorded in model_card.json
    ...
    same = unchanged_version(repo / "medcnn", inputs)       # next time: the version, or None

The record is the sha256 of the source model file, of the ``training.json`` and
``explanation.json`` beside it (the temperature in the graph, the card's
figures), the labels, and every option that shapes the written files
(``--formats``, ``--max-pixels``, batching, and any flag added later), folded
into one ``fingerprint``. An export whose fingerprint equals the newest
version's is unchanged; one with any other option is not.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from medserve.errors import MedServeError
from medserve.model_card import read_model_card
from medserve.repository import existing_versions, sha256_file

#: The model card's key for this record.
CARD_KEY = "export_inputs"
#: Files beside the model that change what an export writes (see module docstring).
SIDE_FILES = ("training.json", "explanation.json")


def export_inputs(
    model_path: Path, *, options: Mapping[str, Any], labels: Sequence[str]
) -> dict[str, Any]:
    """The record of one export: source checksums, labels, options and their fingerprint.

    Args:
        model_path: The Keras model file exported.
        options: Every setting that shapes the written files, JSON-serialisable.
        labels: The class names, in output order.
    """
    record: dict[str, Any] = {
        "model_sha256": sha256_file(model_path),
        "side_files": {
            name: sha256_file(model_path.parent / name)
            for name in SIDE_FILES
            if (model_path.parent / name).is_file()
        },
        "labels": list(labels),
        "options": {key: options[key] for key in sorted(options)},
    }
    canonical = json.dumps(record, sort_keys=True, default=str).encode("utf-8")
    return {**record, "fingerprint": hashlib.sha256(canonical).hexdigest()}


def unchanged_version(model_dir: Path, inputs: Mapping[str, Any]) -> int | None:
    """The newest version of ``model_dir`` if it was exported from exactly ``inputs``.

    Only the newest version counts: exporting what an older version holds
    makes it the newest again (a roll-back), which is a change.
    """
    versions = existing_versions(model_dir) if model_dir.is_dir() else []
    if not versions:
        return None
    newest = max(versions)
    try:
        card = read_model_card(model_dir / str(newest))
    except MedServeError:
        return None  # No readable card: nothing to compare with, so export.
    recorded = card.get(CARD_KEY)
    if isinstance(recorded, dict) and recorded.get("fingerprint") == inputs["fingerprint"]:
        return newest
    return None
