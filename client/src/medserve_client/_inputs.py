"""Every accepted input kind to the served tensor or to encoded bytes.

Usage::

    from medserve_client._inputs import prepare_tensor, prepare_encoded

    tensor = prepare_tensor("scan.png", index=0, target_hw=(224, 224))   # uint8 (224, 224, 3)
    payload = prepare_encoded("scan.png", index=0)                       # the file's bytes

Pixels are prepared by :mod:`medserve_client.preprocessing` (the pipeline
training uses too); this module adds what only the client needs: naming an
input by its position in the call, and the encoded entry point's payload.
Errors name the input by its path, or by its position when it has none, and
never by its content.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from medserve_client._errors import InvalidInputError
from medserve_client.preprocessing import DEFAULT_MAX_PIXELS, to_model_input, to_rgb
from medserve_client.preprocessing._raster import EXIF_ORIENTATION, check_pixels
from medserve_client.preprocessing._sources import describe, read_bytes

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
# PNG modes the server's decode_image(channels=3) reads as the pipeline does
# (16-bit grey: both keep the high byte); other files are decoded here and
# re-encoded as 8-bit PNG.
_PASSTHROUGH_PNG_MODES = frozenset(
    {"RGB", "RGBA", "L", "LA", "P", "I;16", "I;16B", "I;16L", "I;16N"}
)


def prepare_tensor(
    value: Any, *, index: int, target_hw: tuple[int, int], max_pixels: int = DEFAULT_MAX_PIXELS
) -> npt.NDArray[np.uint8]:
    """One input to the served uint8 (H, W, 3) tensor, decoded and resized here."""
    return to_model_input(value, target_hw, what=describe(value, index), max_pixels=max_pixels)


def prepare_encoded(value: Any, *, index: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> bytes:
    """One input to encoded bytes for the ``<model>_encoded`` entry point.

    PNG and JPEG files go as they are (the point: bandwidth), unless the
    server would read them differently from the pipeline: an EXIF rotation
    (TensorFlow ignores EXIF), a PNG mode TensorFlow reads otherwise (32-bit
    integer, float). Everything else (DICOM, arrays, PIL images, other
    formats) goes through the pipeline at its own size and is sent as a
    lossless PNG, so the server still does the resize.
    """
    what = describe(value, index)
    if isinstance(value, bytes | bytearray | memoryview | str | os.PathLike):
        data = read_bytes(value, what=what)
        if _server_reads_as_is(data, what=what, max_pixels=max_pixels):
            return data
        value = data  # Read once.
    return encode_png(to_rgb(value, what=what, max_pixels=max_pixels))


def _server_reads_as_is(data: bytes, *, what: str, max_pixels: int) -> bool:
    if not (data.startswith(_PNG_MAGIC) or data.startswith(_JPEG_MAGIC)):
        return False
    # Header only (lazy): also refuses bombs before the server sees them.
    image = decode_image_header(data, what=what, max_pixels=max_pixels)
    if image.getexif().get(EXIF_ORIENTATION, 1) != 1:
        return False  # TensorFlow ignores EXIF: send the upright pixels instead.
    return image.format != "PNG" or image.mode in _PASSTHROUGH_PNG_MODES


def decode_image_header(data: bytes, *, what: str, max_pixels: int) -> Image.Image:
    """Open (not load) an image to read its format, mode, size and EXIF."""
    try:
        image = Image.open(io.BytesIO(data))
    except Exception as exc:
        raise InvalidInputError(f"{what}: not an image Pillow can read") from exc
    check_pixels(image.width, image.height, what=what, max_pixels=max_pixels)
    return image


def encode_png(rgb: npt.NDArray[np.uint8]) -> bytes:
    """Encode an RGB uint8 array as PNG (lossless, for the encoded entry point)."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def ready_tensors(items: Sequence[Any], *, encoded: bool, target_hw: tuple[int, int]) -> bool:
    """True when every item is already the served tensor: uint8 ``(H, W, 3)`` at ``target_hw``.

    Such items pass the pipeline unchanged (it only checks them), so the
    asyncio client prepares them on its loop instead of in a worker thread.
    """
    if encoded:
        return False
    shape = (*target_hw, 3)
    return all(
        isinstance(item, np.ndarray) and item.dtype == np.uint8 and item.shape == shape
        for item in items
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
