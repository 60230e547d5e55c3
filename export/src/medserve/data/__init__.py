"""Datasets for training: image folders (PNG, JPEG, DICOM), labels, splits, a synthetic set.

Usage::

    from medserve.data import load_image_folder, synthetic_dataset

    data = load_image_folder(Path("data/chest"), image_size=(224, 224))
    data = synthetic_dataset(count_per_class=160, image_size=(224, 224), seed=0)
    train, validation = data.split(validation_split=0.2, seed=0)

Pixels are prepared by the client's pipeline,
:mod:`medserve_client.preprocessing` (decode, RGB uint8, resize), so training
sees what a served request sends; this package only finds, labels and splits
the files. TensorFlow is never imported here.
"""

from medserve.data.dataset import LabelledImages, split_indices
from medserve.data.folder import FolderListing, image_kind, list_image_folder, load_image_folder
from medserve.data.synthetic import (
    generate_synthetic,
    generate_synthetic_with_masks,
    synthetic_dataset,
    write_synthetic_folder,
)

__all__ = [
    "FolderListing",
    "LabelledImages",
    "generate_synthetic",
    "generate_synthetic_with_masks",
    "image_kind",
    "list_image_folder",
    "load_image_folder",
    "split_indices",
    "synthetic_dataset",
    "write_synthetic_folder",
]
