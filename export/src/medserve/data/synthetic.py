"""A seeded synthetic "scan" dataset: tissue-like fields, some with a bright round lesion.

Usage::

    images, labels, names = generate_synthetic(count_per_class=100, image_size=(224, 224), seed=0)
    names                      # ("normal", "lesion"); labels index into it
    write_synthetic_folder(Path("work/synthetic"), 20, (224, 224), seed=0)  # real PNG/JPEG files
    images, labels, masks = generate_synthetic_with_masks(50, (224, 224), seed=1)
    masks[labels == 1]         # bool (H, W) lesion discs; all False for normal images

Each image is a greyscale field that looks like a cross-section: a dark
background, a body-shaped soft-edged ellipse filled with low-frequency
"tissue" texture, a slightly brighter organ in its upper left, and sensor
noise. Images of class ``lesion`` also carry one small bright round blob at a
random position inside that organ, of random size and contrast; ``normal``
images do not. The task is easy enough that the
reference CNN learns it well above chance in a short CPU run, and the pictures
are still something a radiology demo can show.

Every image has its own random stream derived from ``(seed, class, index)``,
so the first ``n`` images are the same whatever ``count_per_class`` is, and the
same seed always gives bitwise-identical arrays.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medserve.data.dataset import LabelledImages
from medserve.errors import UsageError

log = logging.getLogger(__name__)

LABELS = ("normal", "lesion")
# Bump when the pictures change, so a model trained on the old ones is not reused.
GENERATOR_VERSION = 3
FORMATS = {"png": ".png", "jpeg": ".jpg", "dcm": ".dcm"}
# Lesion radius (fraction of the half-side: 10-16 px at 224) and contrast (added
# brightness, 0..1). Chosen by measurement: the reference CNN reaches validation
# accuracy >= 0.9 within a few epochs on a few hundred images; fainter, smaller
# lesions (radius 0.06-0.11, contrast 0.3-0.45) needed many more epochs.
_LESION_RADIUS = (0.09, 0.14)
_LESION_CONTRAST = (0.5, 0.6)


def generate_synthetic(
    count_per_class: int, image_size: tuple[int, int] = (224, 224), seed: int = 0
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Generate ``count_per_class`` images of each class.

    Args:
        count_per_class: Images per class (at least 1).
        image_size: ``(height, width)``, at least 16x16.
        seed: Same seed, same images.

    Returns:
        ``(images, labels, label_names)``: ``uint8 (N, H, W, 3)`` greyscale
        replicated to RGB, ``int64 (N,)`` class indices (all ``normal`` first,
        then all ``lesion``), and ``("normal", "lesion")``.
    """
    _check(count_per_class, image_size)
    height, width = image_size
    images = np.empty((2 * count_per_class, height, width, 3), dtype=np.uint8)
    labels = np.repeat(np.arange(len(LABELS), dtype=np.int64), count_per_class)
    for position, label in enumerate(labels):
        index = position % count_per_class
        grey = synthetic_scan(image_size, seed=seed, label=int(label), index=index)
        images[position] = grey[:, :, None]
    return images, labels, LABELS


def synthetic_dataset(
    count_per_class: int, image_size: tuple[int, int] = (224, 224), seed: int = 0
) -> LabelledImages:
    """:func:`generate_synthetic` as a :class:`LabelledImages` with keys ``label/index``."""
    images, labels, names = generate_synthetic(count_per_class, image_size, seed)
    keys = tuple(f"{names[label]}/{i % count_per_class:05d}" for i, label in enumerate(labels))
    return LabelledImages(images=images, labels=labels, label_names=names, keys=keys)


def generate_synthetic_with_masks(
    count_per_class: int, image_size: tuple[int, int] = (224, 224), seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`generate_synthetic` plus each image's lesion mask.

    Returns:
        ``(images, labels, masks)``: the same images and labels as
        :func:`generate_synthetic` with the same arguments, and ``bool (N, H, W)``
        masks that are True on the lesion disc (its radius, the half-brightness
        rim) and all False for ``normal`` images.
    """
    _check(count_per_class, image_size)
    height, width = image_size
    images = np.empty((2 * count_per_class, height, width, 3), dtype=np.uint8)
    masks = np.zeros((2 * count_per_class, height, width), dtype=bool)
    labels = np.repeat(np.arange(len(LABELS), dtype=np.int64), count_per_class)
    for position, label in enumerate(labels):
        index = position % count_per_class
        grey, masks[position] = synthetic_scan_and_mask(
            image_size, seed=seed, label=int(label), index=index
        )
        images[position] = grey[:, :, None]
    return images, labels, masks


def synthetic_scan(image_size: tuple[int, int], *, seed: int, label: int, index: int) -> np.ndarray:
    """One greyscale ``uint8 (H, W)`` image; ``label`` 1 carries a lesion."""
    return synthetic_scan_and_mask(image_size, seed=seed, label=label, index=index)[0]


def synthetic_scan_and_mask(
    image_size: tuple[int, int], *, seed: int, label: int, index: int
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`synthetic_scan` and its ``bool (H, W)`` lesion mask (all False without one)."""
    rng = np.random.default_rng([seed, label, index])
    height, width = image_size
    ys, xs = np.meshgrid(
        np.linspace(-1.0, 1.0, height), np.linspace(-1.0, 1.0, width), indexing="ij"
    )
    # Body: a rotated ellipse with a soft edge, slightly off centre.
    centre = rng.normal(0.0, 0.05, size=2)
    axes = (rng.uniform(0.70, 0.88), rng.uniform(0.60, 0.85))
    body_distance = _ellipse_distance(ys, xs, centre, axes, rng.uniform(-0.3, 0.3))
    body = _soft_step(1.0 - body_distance, sharpness=14.0)
    # Tissue: two scales of smooth texture (organs, then parenchyma).
    tissue = (
        0.40
        + 0.06 * _smooth_noise(rng, image_size, cycles=3.0)
        + 0.035 * _smooth_noise(rng, image_size, cycles=12.0)
    )
    # An organ (liver-like): a slightly brighter ellipse in the upper left of
    # the body. Lesions grow inside it, as they would in one organ of a real
    # series; this also keeps the task learnable for a network that ends in
    # Flatten + Dense and so has to learn each lesion position separately.
    organ_centre = centre + np.array([-0.2 * axes[0], -0.3 * axes[1]]) + rng.normal(0, 0.03, 2)
    organ_axes = (rng.uniform(0.26, 0.32), rng.uniform(0.30, 0.36))
    organ_distance = _ellipse_distance(ys, xs, organ_centre, organ_axes, rng.uniform(-0.4, 0.4))
    organ = _soft_step(1.0 - organ_distance, sharpness=10.0)
    picture = 0.04 + body * (tissue - 0.04) + 0.08 * organ
    mask = np.zeros(image_size, dtype=bool)
    if label == 1:
        lesion, mask = _lesion(rng, ys, xs, organ_centre, organ_axes, image_size)
        picture += lesion
    picture += rng.normal(0.0, 0.025, size=image_size)
    return np.round(np.clip(picture, 0.0, 1.0) * 255.0).astype(np.uint8), mask


def write_synthetic_folder(
    directory: Path,
    count_per_class: int,
    image_size: tuple[int, int] = (224, 224),
    seed: int = 0,
    formats: Sequence[str] = ("png", "jpeg"),
) -> list[Path]:
    """Write synthetic images as real files into ``directory/<label>/``.

    Formats cycle per image (with the default, even indices are PNG and odd
    ones JPEG at quality 95). ``"dcm"`` writes uncompressed 8-bit MONOCHROME2
    Secondary Capture DICOM files with an identity window and a made-up
    phantom patient.

    Args:
        directory: Created if missing; existing files of the same names are replaced.
        count_per_class: Images per class.
        image_size: ``(height, width)``.
        seed: As :func:`generate_synthetic`.
        formats: Any of ``"png"``, ``"jpeg"``, ``"dcm"``.

    Returns:
        The written paths, class by class.
    """
    unknown = [f for f in formats if f not in FORMATS]
    if not formats or unknown:
        raise UsageError(f"formats must be some of {sorted(FORMATS)}, got {list(formats)}")
    _check(count_per_class, image_size)
    from PIL import Image

    written: list[Path] = []
    for label, name in enumerate(LABELS):
        folder = directory / name
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(count_per_class):
            grey = synthetic_scan(image_size, seed=seed, label=label, index=index)
            fmt = formats[index % len(formats)]
            path = folder / f"{name}_{index:05d}{FORMATS[fmt]}"
            if fmt == "dcm":
                _write_dicom(path, grey, uid_entropy=[str(seed), name, str(index)])
            else:
                Image.fromarray(grey).save(path, format=fmt.upper(), quality=95)
            written.append(path)
    log.info("wrote %d synthetic images to %s", len(written), directory)
    return written


def _write_dicom(path: Path, grey: np.ndarray, *, uid_entropy: list[str]) -> None:
    """An uncompressed 8-bit MONOCHROME2 Secondary Capture file with a phantom patient."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    # Deterministic UIDs: the same seed writes byte-identical files.
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=uid_entropy)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientName = "Synthetic^Phantom"
    ds.PatientID = "SYNTHETIC"
    ds.Modality = "OT"
    ds.Rows, ds.Columns = grey.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    # The identity window for 8 bits (LINEAR: (v - 127.5) / 255 + 0.5), so a
    # viewer, and our own loader, shows the stored values unstretched.
    ds.WindowCenter = 128
    ds.WindowWidth = 256
    ds.PixelData = np.ascontiguousarray(grey, dtype=np.uint8).tobytes()
    ds.save_as(path, enforce_file_format=True)


def _check(count_per_class: int, image_size: tuple[int, int]) -> None:
    if count_per_class < 1:
        raise UsageError(f"samples per class must be at least 1, got {count_per_class}")
    if min(image_size) < 16:
        raise UsageError(f"synthetic image size {image_size} is too small: at least 16x16")


def _ellipse_distance(
    ys: np.ndarray, xs: np.ndarray, centre: np.ndarray, axes: tuple[float, float], angle: float
) -> np.ndarray:
    """Normalised distance: < 1 inside the ellipse, 1 on its edge."""
    dy, dx = ys - centre[0], xs - centre[1]
    cos, sin = np.cos(angle), np.sin(angle)
    u, v = cos * dy - sin * dx, sin * dy + cos * dx
    return np.sqrt((u / axes[0]) ** 2 + (v / axes[1]) ** 2)


def _soft_step(x: np.ndarray, sharpness: float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-sharpness * x))


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cycles: float) -> np.ndarray:
    """Gaussian-filtered white noise with about ``cycles`` blobs across the image, unit std.

    Filtering in the Fourier domain keeps the texture's scale the same at any
    image size (32x32 in tests, 224x224 in the demo).
    """
    noise = rng.standard_normal(shape)
    fy = np.fft.fftfreq(shape[0])[:, None] * shape[0]
    fx = np.fft.rfftfreq(shape[1])[None, :] * shape[1]
    gain = np.exp(-(fy**2 + fx**2) / (2.0 * cycles**2))
    field = np.fft.irfft2(np.fft.rfft2(noise) * gain, s=shape)
    return (field - field.mean()) / (field.std() + 1e-12)


def _lesion(
    rng: np.random.Generator,
    ys: np.ndarray,
    xs: np.ndarray,
    centre: np.ndarray,
    axes: tuple[float, float],
    image_size: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray]:
    """A bright round blob, well inside the given ellipse, and its disc mask.

    The mask is the disc up to the radius, where the soft rim is at half
    brightness. No random draw depends on it, so images are unchanged.
    """
    # Rejection-free position: a random point at most 45% of the way to the edge
    # (a few positions on the last feature map, which Flatten + Dense must learn one by one).
    angle, reach = rng.uniform(0.0, 2.0 * np.pi), 0.45 * np.sqrt(rng.uniform(0.0, 1.0))
    cy = centre[0] + reach * axes[0] * np.sin(angle)
    cx = centre[1] + reach * axes[1] * np.cos(angle)
    # Never under 1.5 px, so that a 32x32 test image still shows a disc.
    pixel = 2.0 / min(image_size)
    radius = max(rng.uniform(*_LESION_RADIUS), 3.0 * pixel)
    contrast = rng.uniform(*_LESION_CONTRAST)
    distance = np.sqrt((ys - cy) ** 2 + (xs - cx) ** 2)
    # A disc with a one-pixel soft rim: round at any size, no aliasing.
    return contrast * _soft_step((radius - distance) / pixel, sharpness=2.0), distance <= radius
