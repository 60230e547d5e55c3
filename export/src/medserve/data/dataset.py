"""An in-memory labelled image set, and its deterministic train/validation split.

Usage::

    data = LabelledImages(images=images, labels=labels, label_names=("normal", "lesion"),
                          keys=("normal/0", "lesion/0", ...))
    train, validation = data.split(validation_split=0.2, seed=0)
    train.class_counts()   # {"normal": 80, "lesion": 80}

Images are kept as ``uint8`` (150 KB each at 224x224x3, a quarter of float32)
and scaled to float32 in [0, 1] one batch at a time during training, so a few
thousand images fit comfortably in memory; tens of thousands need a streaming
loader instead.

The split is stratified (each class contributes the same fraction to the
validation set) and depends only on the seed and on each image's key (its path
relative to the data folder): never on the order in which the file system lists
files, and adding one file moves no other file between the two sides.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from medserve.errors import UsageError


@dataclass(frozen=True, kw_only=True)
class LabelledImages:
    """Images, their class indices and where each came from.

    Attributes:
        images: ``uint8`` array ``(N, height, width, 3)``.
        labels: ``int64`` class indices ``(N,)`` into ``label_names``.
        label_names: Class names; index ``i`` is output ``i`` of the model.
        keys: A stable identity per image (a relative path, or a synthetic id),
            used by the split.
        skipped_files: Files that could not be read (relative paths).
    """

    images: np.ndarray
    labels: np.ndarray
    label_names: tuple[str, ...]
    keys: tuple[str, ...]
    skipped_files: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        count = len(self.images)
        if self.images.dtype != np.uint8 or self.images.ndim != 4 or self.images.shape[-1] != 3:
            raise ValueError(
                f"images must be uint8 (N, H, W, 3), got {self.images.dtype} {self.images.shape}"
            )
        if len(self.labels) != count or len(self.keys) != count:
            raise ValueError(
                f"{count} images but {len(self.labels)} labels and {len(self.keys)} keys"
            )

    def __len__(self) -> int:
        return len(self.images)

    @property
    def image_size(self) -> tuple[int, int]:
        """``(height, width)`` of every image."""
        return (int(self.images.shape[1]), int(self.images.shape[2]))

    def class_counts(self) -> dict[str, int]:
        """Number of images per class name, in label order."""
        counts = np.bincount(self.labels, minlength=len(self.label_names))
        return {name: int(n) for name, n in zip(self.label_names, counts, strict=True)}

    def subset(self, indices: np.ndarray) -> LabelledImages:
        """The images at ``indices`` (a copy), with the same label names."""
        return LabelledImages(
            images=self.images[indices],
            labels=self.labels[indices],
            label_names=self.label_names,
            keys=tuple(self.keys[i] for i in indices),
            skipped_files=self.skipped_files,
        )

    def split(self, *, validation_split: float, seed: int) -> tuple[LabelledImages, LabelledImages]:
        """Split into ``(train, validation)``; see :func:`split_indices`."""
        train_idx, val_idx = split_indices(
            self.keys,
            self.labels,
            validation_split=validation_split,
            seed=seed,
            label_names=self.label_names,
        )
        return self.subset(train_idx), self.subset(val_idx)


def split_indices(
    keys: tuple[str, ...] | list[str],
    labels: np.ndarray,
    *,
    validation_split: float,
    seed: int,
    label_names: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Choose the validation images of each class by a seeded hash of their key.

    Within a class, images are ordered by ``sha256(seed, key)`` and the first
    ``round(n * validation_split)`` (at least one, and never all) go to
    validation. The result depends on the keys' content, not their order.

    Args:
        keys: Stable identity of each image (unique).
        labels: Class index of each image.
        validation_split: Fraction of each class for validation, in (0, 1).
        seed: Changes which images are chosen.
        label_names: Class names, only for error messages.

    Returns:
        ``(train_indices, validation_indices)``, each sorted ascending.

    Raises:
        UsageError: A bad fraction, or a class with fewer than two images.
    """
    if not 0.0 < validation_split < 1.0:
        raise UsageError(f"validation_split must be between 0 and 1, got {validation_split}")
    labels = np.asarray(labels)
    validation: list[int] = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label).tolist()
        if len(members) < 2:
            name = label_names[int(label)] if label_names else f"index {int(label)}"
            raise UsageError(
                f"class {name!r} has {len(members)} readable image; each class needs at "
                "least 2 so that it appears in both training and validation"
            )
        members.sort(key=lambda i: (_split_rank(seed, keys[i]), keys[i]))
        wanted = math.floor(len(members) * validation_split + 0.5)
        validation.extend(members[: min(max(wanted, 1), len(members) - 1)])
    val_idx = np.array(sorted(validation), dtype=np.int64)
    train_idx = np.setdiff1d(np.arange(len(labels), dtype=np.int64), val_idx)
    return train_idx, val_idx


def _split_rank(seed: int, key: str) -> bytes:
    return hashlib.sha256(f"{seed}\0{key}".encode()).digest()
