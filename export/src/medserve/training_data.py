"""The images of a training run: loaded and split once by training, again for INT8 calibration.

Usage::

    listing = list_image_folder(config.data_dir) if config.data_dir else None
    data, train_set, validation_set = load_split(config, (224, 224), listing)   # training
    train_set, validation_set = split_of_record(record, model_dir)     # export --int8

Both go through the same loaders (:func:`medserve.data.load_image_folder`,
which prepares pixels with the client's pipeline, or the synthetic generator)
and the same seeded, key-based split, so the exporter calibrates the INT8
model on the very training images and gates it on the very validation images
of the run that produced the model. :func:`split_of_record` refuses when the
data is no longer what the run saw (its fingerprint changed): the figures it
would give describe other images.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medserve.data import (
    FolderListing,
    LabelledImages,
    list_image_folder,
    load_image_folder,
    synthetic_dataset,
)
from medserve.data.synthetic import GENERATOR_VERSION
from medserve.errors import UsageError
from medserve.training_record import TRAINING_FILENAME, sha256_text

if TYPE_CHECKING:
    from medserve.training import TrainConfig

# The image size a run without --image-size or a base model trains at.
DEFAULT_IMAGE_SIZE = (224, 224)


def load_split(
    config: TrainConfig, image_size: tuple[int, int], listing: FolderListing | None
) -> tuple[LabelledImages, LabelledImages, LabelledImages]:
    """Load the run's images at ``image_size`` and split them: ``(all, train, validation)``."""
    if listing is not None:
        data = load_image_folder(listing, image_size)
    else:
        data = synthetic_dataset(config.resolved_samples_per_class(), image_size, config.seed)
    train_set, validation_set = data.split(
        validation_split=config.resolved_validation_split(), seed=config.seed
    )
    return data, train_set, validation_set


def data_fingerprint(config: TrainConfig, listing: FolderListing | None) -> str:
    """What the run's data was: the folder listing's fingerprint, or the synthetic settings."""
    if listing is not None:
        return listing.fingerprint()
    params = {
        "kind": "synthetic",
        "generator_version": GENERATOR_VERSION,
        "samples_per_class": config.resolved_samples_per_class(),
        "image_size": list(config.image_size or DEFAULT_IMAGE_SIZE),
        "seed": config.seed,
    }
    return sha256_text(json.dumps(params, sort_keys=True))


def split_of_record(
    record: dict[str, Any] | None, model_dir: Path
) -> tuple[LabelledImages, LabelledImages]:
    """The ``(train, validation)`` images of the run that ``training.json`` describes.

    Args:
        record: ``training.json`` next to the model (``None`` when there is none).
        model_dir: Folder of the model and its ``training.json`` (for messages).

    Raises:
        UsageError: No record, a record without its data source, or data that
            changed since training (the fingerprint differs).
    """
    from medserve.training import TrainConfig

    where = model_dir / TRAINING_FILENAME
    if record is None:
        raise UsageError(
            f"--int8 calibrates on the training images and checks on the validation images of "
            f"the run that made the model, but {where} is missing; train the model with "
            "`medserve train`, or export without --int8"
        )
    source = record.get("data_source") or {}
    settings = record.get("hyperparameters") or {}
    try:
        image_size = (int(record["image_size"][0]), int(record["image_size"][1]))
        requested = settings.get("image_size")
        config = TrainConfig(
            output=model_dir,
            data_dir=Path(source["path"]) if source.get("kind") == "folder" else None,
            image_size=tuple(requested) if requested else None,
            validation_split=float(settings["validation_split"]),
            seed=int(settings["seed"]),
            filters=tuple(settings.get("filters") or (32, 64, 128)),
            samples_per_class=(
                int(source["samples_per_class"]) if source.get("kind") == "synthetic" else None
            ),
        )
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise UsageError(
            f"{where} does not say which images the model was trained on ({exc!r} missing or "
            "invalid); train it again with `medserve train`, or export without --int8"
        ) from exc
    if source.get("kind") == "synthetic" and source.get("generator_version") != GENERATOR_VERSION:
        raise UsageError(
            f"{where}: the synthetic set was made by generator version "
            f"{source.get('generator_version')}, this medserve makes version {GENERATOR_VERSION}; "
            "train again with `medserve train`, or export without --int8"
        )
    listing = list_image_folder(config.data_dir) if config.data_dir is not None else None
    if data_fingerprint(config, listing) != record.get("data_fingerprint"):
        raise UsageError(
            f"the training data changed since {where} was written (its fingerprint differs), so "
            "its split no longer holds the images the model was trained and validated on; "
            "train again with `medserve train`, or export without --int8"
        )
    _, train_set, validation_set = load_split(config, image_size, listing)
    return train_set, validation_set
