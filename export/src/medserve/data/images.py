"""Decode one image file (PNG, JPEG or DICOM) into the model's input picture.

Usage::

    kind = image_kind(Path("scan.dcm"))            # "dicom", "png", "jpeg" or None
    rgb = load_image(Path("scan.dcm"), (224, 224))  # uint8 (224, 224, 3)

Every picture comes out as RGB ``uint8`` of the requested size (greyscale is
replicated to three channels; alpha is dropped). Training scales it to float32
in [0, 1]; the exported SavedModel does the same scaling on the uint8 tensor a
client sends, so training and serving see the same numbers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medserve.data.dicom import DicomDecodeError, dicom_to_uint8

DICOM_SUFFIXES = (".dcm", ".dicom")
PNG_SUFFIXES = (".png",)
JPEG_SUFFIXES = (".jpg", ".jpeg")
_DICOM_MAGIC_OFFSET = 128
_DICOM_MAGIC = b"DICM"


class ImageDecodeError(Exception):
    """A file that cannot be used as a training image; the message is safe to log."""


def image_kind(path: Path) -> str | None:
    """Say how ``path`` should be decoded, from its suffix or the DICOM preamble.

    Returns:
        ``"png"``, ``"jpeg"``, ``"dicom"``, or ``None`` for a file that is none of
        them (a README, a ``.DS_Store``): such files are not images to train on.
    """
    suffix = path.suffix.lower()
    if suffix in PNG_SUFFIXES:
        return "png"
    if suffix in JPEG_SUFFIXES:
        return "jpeg"
    if suffix in DICOM_SUFFIXES or has_dicom_preamble(path):
        return "dicom"
    return None


def has_dicom_preamble(path: Path) -> bool:
    """True when the file carries the Part 10 ``DICM`` marker after its 128-byte preamble."""
    try:
        with path.open("rb") as handle:
            handle.seek(_DICOM_MAGIC_OFFSET)
            return handle.read(len(_DICOM_MAGIC)) == _DICOM_MAGIC
    except OSError:
        return False


def load_image(path: Path, image_size: tuple[int, int], kind: str | None = None) -> np.ndarray:
    """Decode ``path`` and resize it to ``image_size``.

    Args:
        path: The image file.
        image_size: ``(height, width)`` of the result.
        kind: What :func:`image_kind` said about the file (computed when omitted).

    Returns:
        ``uint8`` array of shape ``(height, width, 3)``.

    Raises:
        ImageDecodeError: The file is not a decodable PNG, JPEG or DICOM image.
    """
    kind = kind or image_kind(path)
    if kind == "dicom":
        try:
            picture = dicom_to_uint8(path)
        except DicomDecodeError as exc:
            raise ImageDecodeError(str(exc)) from exc
    elif kind in ("png", "jpeg"):
        picture = _decode_raster(path)
    else:
        raise ImageDecodeError("not a PNG, JPEG or DICOM file")
    return resize_rgb(picture, image_size)


def _decode_raster(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            # No EXIF rotation on purpose: the server's decoder ignores EXIF too,
            # so training sees the pixels a served request would see.
            image.load()
            if image.mode in ("I", "I;16", "I;16B", "I;16L"):
                # 16-bit greyscale: keep the top 8 bits, as TensorFlow's
                # decode_png(dtype=uint8) does on the serving side.
                grey = np.asarray(image, dtype=np.int64)
                return (np.clip(grey, 0, 65535) >> 8).astype(np.uint8)
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        # PIL's messages describe the file format problem, never the content.
        raise ImageDecodeError(f"image does not decode ({type(exc).__name__}: {exc})") from exc


def resize_rgb(picture: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """Resize an ``(H, W)`` or ``(H, W, 3)`` uint8 picture to RGB ``image_size``.

    Bilinear, like ``tf.image.resize`` in the served preprocessing; the aspect
    ratio is not kept (the model takes a fixed square input).
    """
    from PIL import Image

    height, width = image_size
    picture = np.ascontiguousarray(picture, dtype=np.uint8)
    if picture.shape[:2] != (height, width):
        # Resize before replicating grey to RGB: a third of the work.
        resized = Image.fromarray(picture).resize((width, height), Image.Resampling.BILINEAR)
        picture = np.asarray(resized)
    if picture.ndim == 2:
        picture = np.repeat(picture[:, :, None], 3, axis=2)
    return np.ascontiguousarray(picture)
