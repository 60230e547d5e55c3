"""An image-folder dataset: one subfolder per class, PNG, JPEG and DICOM files.

Usage::

    listing = list_image_folder(Path("data/chest"))   # classes and files, no decoding
    data = load_image_folder(Path("data/chest"), image_size=(224, 224))
    data.label_names     # sorted subfolder names, e.g. ("lesion", "normal")

Layout::

    data/chest/
        lesion/   a.png  b.jpg  c.dcm  IM0001 (a DICOM file without suffix)
        normal/   ...

Class names are the sorted subfolder names; label ``i`` is output ``i`` of the
model. Files are found recursively inside each class folder; hidden files and
files that are not PNG, JPEG or DICOM (by suffix, or DICOM by its first bytes,
with or without the Part 10 preamble) are ignored. Every image is decoded up
front by the client's pixel pipeline (:mod:`medserve_client.preprocessing`,
the code that prepares served requests), so an unreadable or corrupt file is
skipped with a warning that names it (and never its patient attributes) and
is counted, instead of failing in the middle of an epoch.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medserve.data.dataset import LabelledImages
from medserve.errors import UsageError
from medserve_client.preprocessing import InvalidInputError, is_dicom, to_model_input

log = logging.getLogger(__name__)

_PROGRESS_EVERY = 1000
DICOM_SUFFIXES = (".dcm", ".dicom")
PNG_SUFFIXES = (".png",)
JPEG_SUFFIXES = (".jpg", ".jpeg")


@dataclass(frozen=True)
class FolderListing:
    """What an image folder holds, before any decoding.

    Attributes:
        root: The data folder.
        label_names: Sorted class (subfolder) names.
        files: ``(relative_path, kind, label_index)`` per candidate image, sorted.
        ignored: Relative paths of files that are not images.
    """

    root: Path
    label_names: tuple[str, ...]
    files: tuple[tuple[str, str, int], ...]
    ignored: tuple[str, ...]

    def fingerprint(self) -> str:
        """sha256 over every candidate file's relative path, size and mtime.

        Cheap (no file is read) and changes when a file is added, removed,
        renamed or rewritten, which is what the reuse of a trained model needs.
        """
        digest = hashlib.sha256()
        for relative, _kind, label in self.files:
            stat = (self.root / relative).stat()
            digest.update(f"{label}\0{relative}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        return digest.hexdigest()


def list_image_folder(directory: Path) -> FolderListing:
    """Discover the classes and candidate image files of ``directory``.

    Raises:
        UsageError: The folder is missing, has fewer than two class subfolders,
            or a class subfolder holds no PNG, JPEG or DICOM file.
    """
    if not directory.exists():
        raise UsageError(f"data folder {directory} does not exist")
    if not directory.is_dir():
        raise UsageError(f"data folder {directory} is not a directory")
    classes = sorted(p.name for p in directory.iterdir() if p.is_dir() and not _hidden(p.name))
    if len(classes) < 2:
        names = ", ".join(classes) if classes else "none"
        raise UsageError(
            f"data folder {directory} has {len(classes)} class subfolder(s) ({names}); "
            "put the images of each class in its own subfolder, at least two classes"
        )
    files: list[tuple[str, str, int]] = []
    ignored: list[str] = []
    for label, name in enumerate(classes):
        found = 0
        for path in sorted((directory / name).rglob("*")):
            relative = path.relative_to(directory)
            if any(_hidden(part) for part in relative.parts) or not path.is_file():
                continue
            kind = image_kind(path)
            if kind is None:
                ignored.append(relative.as_posix())
                continue
            files.append((relative.as_posix(), kind, label))
            found += 1
        if found == 0:
            raise UsageError(
                f"class folder {directory / name} has no PNG, JPEG or DICOM files; "
                "add images or remove the folder"
            )
    if ignored:
        log.info(
            "ignored %d file(s) in %s that are not PNG, JPEG or DICOM", len(ignored), directory
        )
    return FolderListing(directory, tuple(classes), tuple(files), tuple(ignored))


def load_image_folder(
    directory: Path | FolderListing, image_size: tuple[int, int]
) -> LabelledImages:
    """Decode every image of an image folder, skipping the unreadable ones.

    Args:
        directory: The data folder, or its :func:`list_image_folder` listing.
        image_size: ``(height, width)`` every image is resized to.

    Returns:
        The images with keys = paths relative to the folder, and the skipped files.

    Raises:
        UsageError: As :func:`list_image_folder`, or when every file of a class
            is unreadable.
    """
    listing = directory if isinstance(directory, FolderListing) else list_image_folder(directory)
    height, width = image_size
    images = np.empty((len(listing.files), height, width, 3), dtype=np.uint8)
    labels: list[int] = []
    keys: list[str] = []
    skipped: list[str] = []
    for number, (relative, _kind, label) in enumerate(listing.files, start=1):
        path = listing.root / relative
        try:
            # The client's own pipeline: training sees the pixels serving sends.
            images[len(keys)] = to_model_input(path, image_size, what=str(path))
        except InvalidInputError as exc:
            # The message names the file and never a patient attribute.
            log.warning("skipped unreadable image %s", exc)
            skipped.append(relative)
            continue
        labels.append(label)
        keys.append(relative)
        if number % _PROGRESS_EVERY == 0:
            log.info("decoded %d of %d images", number, len(listing.files))
    label_array = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(label_array, minlength=len(listing.label_names))
    for name, count in zip(listing.label_names, counts, strict=True):
        if count == 0:
            raise UsageError(
                f"class folder {listing.root / name} has no readable image "
                "(every file was skipped; see the warnings above)"
            )
    data = LabelledImages(
        images=images[: len(keys)],
        labels=label_array,
        label_names=listing.label_names,
        keys=tuple(keys),
        skipped_files=tuple(skipped),
    )
    log.info(
        "loaded %d images of %d classes from %s (%s); skipped %d unreadable file(s)",
        len(data),
        len(listing.label_names),
        listing.root,
        ", ".join(f"{k}: {v}" for k, v in data.class_counts().items()),
        len(skipped),
    )
    return data


def image_kind(path: Path) -> str | None:
    """Say what ``path`` holds, from its suffix or its first bytes.

    Returns:
        ``"png"``, ``"jpeg"``, ``"dicom"``, or ``None`` for a file that is none of
        them (a README, a ``.DS_Store``): such files are not images to train on.
        DICOM files without a suffix are recognised as the pipeline recognises
        them (:func:`medserve_client.preprocessing.is_dicom`), with or without
        the Part 10 preamble.
    """
    suffix = path.suffix.lower()
    if suffix in PNG_SUFFIXES:
        return "png"
    if suffix in JPEG_SUFFIXES:
        return "jpeg"
    if suffix in DICOM_SUFFIXES or is_dicom(path):
        return "dicom"
    return None


def _hidden(name: str) -> bool:
    return name.startswith(".")
