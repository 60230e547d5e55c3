"""Every accepted input kind to the served tensor or to encoded bytes.

Usage::

    from medserve_client._inputs import prepare_tensor, prepare_encoded

    tensor = prepare_tensor("scan.png", index=0, target_hw=(224, 224))   # uint8 (224, 224, 3)
    payload = prepare_encoded("scan.png", index=0)                       # the file's bytes

Accepted: a path (``str`` or ``os.PathLike``; DICOM recognised by its ``DICM``
magic), encoded bytes, a PIL image, a numpy array (HWC, uint8 or float in
[0, 1]), a ``pydicom.Dataset`` or a :class:`~medserve_client.DicomSource`.
Errors name the input by its path, or by its position when it has none, and
never by its content.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from medserve_client._dicom import dicom_to_rgb, is_dataset, is_dicom_bytes, read_dataset
from medserve_client._errors import InvalidInputError
from medserve_client._models import DicomSource
from medserve_client._preprocess import (
    DEFAULT_MAX_PIXELS,
    array_to_rgb,
    decode_image,
    encode_png,
    resize_rgb,
    to_rgb_array,
)

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
# PNG modes the server's decode_image(channels=3) reads exactly as Pillow's RGB
# conversion does; other files are decoded here and re-encoded as 8-bit PNG.
_PASSTHROUGH_PNG_MODES = frozenset({"RGB", "RGBA", "L", "LA", "P"})


def describe(value: Any, index: int) -> str:
    """How an input is named in messages: its path, else its position and kind."""
    if isinstance(value, DicomSource):
        value = value.source
    if isinstance(value, str | os.PathLike):
        return os.fspath(value)
    return f"input {index} ({type(value).__name__})"


def prepare_tensor(
    value: Any, *, index: int, target_hw: tuple[int, int], max_pixels: int = DEFAULT_MAX_PIXELS
) -> npt.NDArray[np.uint8]:
    """One input to the served uint8 (H, W, 3) tensor, decoded and resized here."""
    what = describe(value, index)
    return resize_rgb(
        _to_rgb(value, what=what, target_hw=target_hw, max_pixels=max_pixels), target_hw
    )


def _to_rgb(
    value: Any, *, what: str, target_hw: tuple[int, int] | None, max_pixels: int
) -> npt.NDArray[np.uint8]:
    if isinstance(value, DicomSource):
        dataset = _as_dataset(value.source, what=what)
        return dicom_to_rgb(dataset, what=what, frame=value.frame, window=value.window)
    if is_dataset(value):
        return dicom_to_rgb(value, what=what)
    if isinstance(value, Image.Image):
        return to_rgb_array(value)
    if isinstance(value, np.ndarray):
        return array_to_rgb(value, what=what)
    data = _as_bytes(value, what=what)
    if is_dicom_bytes(data):
        return dicom_to_rgb(read_dataset(data, what=what), what=what)
    image = decode_image(data, target_hw=target_hw, what=what, max_pixels=max_pixels)
    return to_rgb_array(image)


def prepare_encoded(value: Any, *, index: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> bytes:
    """One input to encoded bytes for the ``<model>_encoded`` entry point.

    PNG and JPEG files go as they are (the point: bandwidth), unless the
    server would read them differently from this client: a JPEG with an EXIF
    rotation (TensorFlow ignores EXIF) or a 16-bit PNG. Everything else
    (DICOM, arrays, PIL images, other formats) is rendered here at its own size
    and sent as a lossless PNG, so the server still does the resize.
    """
    what = describe(value, index)
    if isinstance(value, bytes | bytearray | memoryview | str | os.PathLike):
        data = _as_bytes(value, what=what)
        if _server_reads_as_is(data, what=what, max_pixels=max_pixels):
            return data
    rgb = _to_rgb(value, what=what, target_hw=None, max_pixels=max_pixels)
    return encode_png(rgb)


def _server_reads_as_is(data: bytes, *, what: str, max_pixels: int) -> bool:
    if not (data.startswith(_PNG_MAGIC) or data.startswith(_JPEG_MAGIC)):
        return False
    # Header only (lazy): also refuses bombs before the server sees them.
    image = decode_image_header(data, what=what, max_pixels=max_pixels)
    if image.format == "PNG":
        return image.mode in _PASSTHROUGH_PNG_MODES
    return image.getexif().get(0x0112, 1) == 1


def decode_image_header(data: bytes, *, what: str, max_pixels: int) -> Image.Image:
    """Open (not load) an image to read its format, mode, size and EXIF."""
    try:
        image = Image.open(io.BytesIO(data))
    except Exception as exc:
        raise InvalidInputError(f"{what}: not an image Pillow can read") from exc
    if image.width * image.height > max_pixels:
        raise InvalidInputError(
            f"{what}: {image.width}x{image.height} pixels exceed the limit of {max_pixels} "
            "(a possible decompression bomb); downscale it first or raise max_pixels"
        )
    return image


def _as_dataset(source: Any, *, what: str) -> Any:
    if is_dataset(source):
        return source
    return read_dataset(_as_bytes(source, what=what), what=what)


def _as_bytes(value: Any, *, what: str) -> bytes:
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


def prepare_all(
    items: Sequence[Any],
    *,
    encoded: bool,
    target_hw: tuple[int, int],
    max_pixels: int = DEFAULT_MAX_PIXELS,
    first: int = 0,
) -> list[Any]:
    """Every input of one call: encoded bytes, or uint8 tensors at ``target_hw``.

    ``first`` is the position of ``items[0]`` in the caller's stream, so that
    errors name the right input.
    """
    if encoded:
        return [
            prepare_encoded(item, index=first + i, max_pixels=max_pixels)
            for i, item in enumerate(items)
        ]
    return [
        prepare_tensor(item, index=first + i, target_hw=target_hw, max_pixels=max_pixels)
        for i, item in enumerate(items)
    ]
