"""Every accepted source, decoded by its kind, to RGB uint8 and to the model input.

The rules are listed in the package docstring (:mod:`medserve_client.preprocessing`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from medserve_client._errors import InvalidInputError
from medserve_client._models import DicomSource
from medserve_client.preprocessing._arrays import array_to_rgb, resize
from medserve_client.preprocessing._dicom import (
    HEAD_BYTES,
    dicom_to_rgb,
    is_dataset,
    is_dicom_head,
    read_dataset,
)
from medserve_client.preprocessing._raster import DEFAULT_MAX_PIXELS, decode_image, pil_to_rgb


def describe(source: Any, index: int | None = None) -> str:
    """How a source is named in messages: its path, else its position or kind.

    Never its content: a DICOM dataset is named by its type, not its patient.
    """
    if isinstance(source, DicomSource):
        source = source.source
    if isinstance(source, str | os.PathLike):
        return os.fspath(source)
    kind = type(source).__name__
    return f"input {index} ({kind})" if index is not None else f"a {kind} input"


def to_rgb(
    source: Any,
    *,
    what: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> npt.NDArray[np.uint8]:
    """Decode ``source`` by its kind to RGB uint8 ``(H, W, 3)`` at its own size.

    Args:
        source: A path, encoded bytes, a PIL image, a numpy HWC array, a
            ``pydicom.Dataset`` or a :class:`~medserve_client.DicomSource`.
        what: How to name the source in error messages (default: its path or kind).
        max_pixels: Refuse encoded images with more pixels (decompression bombs).

    Raises:
        InvalidInputError: The source cannot be read or rendered; the message
            says why and names the source, never its content.
    """
    what = describe(source) if what is None else what
    if isinstance(source, DicomSource):
        dataset = source.source
        if not is_dataset(dataset):
            dataset = read_dataset(read_bytes(dataset, what=what), what=what)
        return dicom_to_rgb(dataset, what=what, frame=source.frame, window=source.window)
    if is_dataset(source):
        return dicom_to_rgb(source, what=what)
    if isinstance(source, Image.Image):
        return pil_to_rgb(source)
    if isinstance(source, np.ndarray):
        return array_to_rgb(source, what=what)
    data = read_bytes(source, what=what)
    if is_dicom_head(data[:HEAD_BYTES]):
        return dicom_to_rgb(read_dataset(data, what=what), what=what)
    image = decode_image(data, what=what, max_pixels=max_pixels)
    return pil_to_rgb(image)


def to_model_input(
    source: Any,
    size: tuple[int, int],
    *,
    what: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> npt.NDArray[np.uint8]:
    """Decode ``source`` and resize it: the uint8 ``(height, width, 3)`` the model takes.

    Args:
        source: As :func:`to_rgb`.
        size: ``(height, width)`` of the model's input.
        what: How to name the source in error messages (default: its path or kind).
        max_pixels: Refuse encoded images with more pixels (decompression bombs).

    Raises:
        InvalidInputError: As :func:`to_rgb`.
    """
    rgb = to_rgb(source, what=what, max_pixels=max_pixels)
    return resize(rgb, size)


def is_dicom(source: bytes | str | os.PathLike[str]) -> bool:
    """True when a file (its path) or its bytes are DICOM, as the pipeline decides.

    DICOM is the Part 10 ``DICM`` magic after the 128-byte preamble, or a bare
    dataset starting with a group 0002 or 0008 element. A path that cannot be
    read is not DICOM (reading it later gives the clear error).
    """
    if isinstance(source, bytes):
        return is_dicom_head(source[:HEAD_BYTES])
    try:
        with open(source, "rb") as handle:
            return is_dicom_head(handle.read(HEAD_BYTES))
    except OSError:
        return False


def read_bytes(value: Any, *, what: str) -> bytes:
    """The bytes of a path or a bytes-like source."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str | os.PathLike):
        path = Path(value)
        try:
            return path.read_bytes()
        except FileNotFoundError as exc:
            raise InvalidInputError(f"{what}: no such file") from exc
        except IsADirectoryError as exc:
            raise InvalidInputError(f"{what}: is a directory, pass image files") from exc
        except OSError as exc:
            raise InvalidInputError(f"{what}: cannot read the file ({exc.strerror})") from exc
    raise InvalidInputError(
        f"{what}: unsupported input type {type(value).__name__}; pass a path, bytes, a PIL "
        "image, a numpy HWC array, a pydicom Dataset or a DicomSource"
    )
