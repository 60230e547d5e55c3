"""The tiny exported model the export and verify unit tests share.

Usage::

    from tiny_export import TINY_LABELS, ExportedRepo, build_tiny_model

A module of its own (not ``conftest``): several test folders have a
``conftest.py``, and ``from conftest import ...`` would pick whichever pytest
imported first.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

TINY_LABELS = ("normal", "nodule", "effusion")
TINY_SIZE = (32, 32)
TINY_MAX_BATCH = 8


@dataclass(frozen=True)
class ExportedRepo:
    """A repository written by one real ``medserve export`` of a tiny model."""

    repo: Path
    model_path: Path
    spec: Any
    model: Any


def build_tiny_model(num_classes: int = len(TINY_LABELS), seed: int = 0) -> Any:
    """A reference CNN small enough to export in a second or two."""
    from medserve.model import build_reference_cnn

    return build_reference_cnn(
        (*TINY_SIZE, 3), num_classes, filters=(4, 8, 8), dense_units=16, seed=seed
    )
