"""``medserve train``: train the classifier on an image folder or the synthetic set.

Usage::

    medserve train --synthetic --output work/model
    medserve train --data data/chest --output work/model --epochs 30 --image-size 224
    medserve train --data data/chest --model my_model.keras --output work/finetuned

Writes ``OUTPUT/model.keras`` and ``OUTPUT/training.json``. A second run with
the same data and settings reuses the model instead of training again
(``--retrain`` forces training).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from medserve.errors import UsageError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``medserve train``."""
    from medserve.training import (
        DEFAULT_BATCH_SIZE,
        DEFAULT_LEARNING_RATE,
        FOLDER_EPOCHS,
        FOLDER_VALIDATION_SPLIT,
        SYNTHETIC_EPOCHS,
        SYNTHETIC_SAMPLES_PER_CLASS,
        SYNTHETIC_VALIDATION_SPLIT,
    )

    parser = subparsers.add_parser(
        "train",
        help="train the classifier (synthetic demo data or an image folder)",
        description=(
            "Train the reference CNN (or fine-tune --model) with Adam and categorical "
            "cross-entropy, early stopping on the validation loss, and write model.keras and "
            "training.json (validation accuracy and ROC AUC) into --output. A run whose data "
            "and settings match the existing training.json is skipped."
        ),
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--synthetic", action="store_true", help="the built-in synthetic set")
    source.add_argument(
        "--data",
        type=Path,
        metavar="DIR",
        help="image folder: one subfolder per class with PNG, JPEG or DICOM files",
    )
    parser.add_argument("--output", type=Path, required=True, metavar="DIR", help="output folder")
    parser.add_argument(
        "--image-size",
        type=_image_size,
        default=None,
        metavar="N|HxW",
        help="input size (default 224, or the input size of --model)",
    )
    parser.add_argument(
        "--epochs",
        type=_positive_int("--epochs"),
        default=None,
        help=f"most epochs (default {SYNTHETIC_EPOCHS} synthetic, {FOLDER_EPOCHS} folder)",
    )
    parser.add_argument(
        "--batch-size",
        type=_positive_int("--batch-size"),
        default=DEFAULT_BATCH_SIZE,
        help=f"images per step (default {DEFAULT_BATCH_SIZE})",
    )
    parser.add_argument(
        "--learning-rate",
        type=float,
        default=DEFAULT_LEARNING_RATE,
        help=f"Adam's learning rate (default {DEFAULT_LEARNING_RATE:g})",
    )
    parser.add_argument(
        "--validation-split",
        type=float,
        default=None,
        help=(
            f"fraction of each class held out (default {SYNTHETIC_VALIDATION_SPLIT} synthetic, "
            f"{FOLDER_VALIDATION_SPLIT} folder); the temperature is fitted on it"
        ),
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of everything random")
    parser.add_argument(
        "--samples-per-class",
        type=_positive_int("--samples-per-class"),
        default=None,
        help=f"synthetic images per class (default {SYNTHETIC_SAMPLES_PER_CLASS})",
    )
    parser.add_argument(
        "--filters",
        type=_filters,
        default=(32, 64, 128),
        help="filters of the convolution blocks (default 32,64,128)",
    )
    parser.add_argument(
        "--patience",
        type=_positive_int("--patience"),
        default=3,
        help="epochs without a better val_loss before stopping (default 3)",
    )
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        metavar="FILE",
        help="fine-tune this .keras/.h5 classifier instead of the reference CNN",
    )
    parser.add_argument(
        "--retrain", action="store_true", help="train even if a matching model exists"
    )


def run(args: argparse.Namespace) -> int:
    """Run ``medserve train``; returns 0 on success."""
    from medserve.training import TrainConfig, train

    if args.samples_per_class is not None and not args.synthetic:
        raise UsageError("--samples-per-class applies to --synthetic only")
    config = TrainConfig(
        output=args.output,
        data_dir=args.data,
        image_size=args.image_size,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        validation_split=args.validation_split,
        seed=args.seed,
        samples_per_class=args.samples_per_class,
        filters=args.filters,
        patience=args.patience,
        base_model=args.model,
        retrain=args.retrain,
    )
    train(config)
    return 0


def _image_size(text: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    try:
        sizes = [int(p) for p in parts]
    except ValueError:
        sizes = []
    if len(sizes) not in (1, 2) or min(sizes) < 8:
        raise argparse.ArgumentTypeError(
            f"--image-size {text!r}: give one number (224) or HxW (224x224), at least 8"
        )
    return (sizes[0], sizes[-1])


def _filters(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(p) for p in text.split(","))
    except ValueError:
        counts = ()
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(
            f"--filters {text!r}: give comma-separated positive counts, e.g. 32,64,128"
        )
    return counts


def _positive_int(flag: str):  # type: ignore[no-untyped-def]
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = 0
        if value < 1:
            raise argparse.ArgumentTypeError(f"{flag} {text!r}: give a positive whole number")
        return value

    return parse
