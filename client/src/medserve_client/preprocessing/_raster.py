"""Encoded images and Pillow images to RGB uint8: decode, EXIF orientation, modes.

The rules are listed in the package docstring (:mod:`medserve_client.preprocessing`);
this module implements the ones for PNG, JPEG and the other formats Pillow reads.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageOps, UnidentifiedImageError

from medserve_client._errors import InvalidInputError
from medserve_client.preprocessing._arrays import float_to_uint8

#: Pillow's own default: larger images are refused as likely decompression bombs.
DEFAULT_MAX_PIXELS = 89_478_485

# Modes Pillow converts to RGB by itself without losing meaning; alpha is dropped
# (not composited), which is what the server's decode_image(channels=3) does.
_DIRECT_RGB_MODES = frozenset(
    {"RGB", "RGBA", "RGBX", "L", "LA", "P", "PA", "1", "CMYK", "YCbCr", "LAB", "HSV", "La", "RGBa"}
)
# 16- and 32-bit integer modes carry 16-bit intensities (Pillow opens 16-bit PNG
# and TIFF as I;16 or I).
_WIDE_INT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
EXIF_ORIENTATION = 0x0112


def check_pixels(width: int, height: int, *, what: str, max_pixels: int) -> None:
    """Refuse an image whose header announces more than ``max_pixels`` pixels."""
    if width * height > max_pixels:
        raise InvalidInputError(
            f"{what}: {width}x{height} pixels exceed the limit of {max_pixels} "
            "(a possible decompression bomb); downscale it first or raise max_pixels"
        )


def decode_image(data: bytes, *, what: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode encoded image bytes with Pillow, EXIF orientation applied.

    Args:
        data: The encoded file (PNG, JPEG, BMP, TIFF... anything Pillow reads).
        what: How to name the input in error messages (a path or ``"input 3"``).
        max_pixels: Refuse images with more pixels (decompression bombs).

    Returns:
        The loaded image, upright, in its original mode.

    Raises:
        InvalidInputError: Not an image, truncated, or too large.
    """
    try:
        with warnings.catch_warnings():
            # Pillow warns, then errors, past its own global limit; we check our own.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image: Image.Image = Image.open(io.BytesIO(data))
            check_pixels(*image.size, what=what, max_pixels=max_pixels)
            orientation = image.getexif().get(EXIF_ORIENTATION, 1)
            # Always at full scale: a reduced-scale JPEG decode (Pillow's draft
            # mode) is faster but moves pixels by up to 9 levels away from the
            # server's decoder, which has no such mode.
            image.load()
    except InvalidInputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InvalidInputError(
            f"{what}: refused as a possible decompression bomb; downscale it first"
        ) from exc
    except UnidentifiedImageError as exc:
        raise InvalidInputError(
            f"{what}: not an image Pillow can read (PNG, JPEG, BMP, TIFF...) nor DICOM"
        ) from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise InvalidInputError(
            f"{what}: the image is damaged or truncated ({type(exc).__name__}); re-export it"
        ) from exc
    return upright(image, orientation)


def upright(image: Image.Image, orientation: int) -> Image.Image:
    """Apply an EXIF orientation (1 to 8) so the image is as a viewer shows it."""
    if orientation == 1:
        return image
    return ImageOps.exif_transpose(image)


def pil_to_rgb(image: Image.Image) -> npt.NDArray[np.uint8]:
    """Any Pillow mode to an RGB uint8 array (H, W, 3), deterministically.

    An EXIF orientation still attached (a PIL image opened by the caller) is
    applied first. L/LA/P/RGBA and friends go through Pillow's own conversion
    (alpha dropped); I;16 and I are 16-bit intensities reduced to 8 bits; F is
    a float in [0, 1].
    """
    image = upright(image, image.getexif().get(EXIF_ORIENTATION, 1))
    if image.mode in _WIDE_INT_MODES:
        gray = sixteen_to_eight(np.asarray(image, dtype=np.int64))
        return np.repeat(gray[:, :, None], 3, axis=2)
    if image.mode == "F":
        gray = float_to_uint8(np.asarray(image, dtype=np.float32))
        return np.repeat(gray[:, :, None], 3, axis=2)
    if image.mode not in _DIRECT_RGB_MODES:
        raise InvalidInputError(f"image mode {image.mode!r} is not supported; save it as RGB")
    if image.mode == "RGB":
        return np.asarray(image, dtype=np.uint8)  # No conversion copy for the common case.
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def sixteen_to_eight(values: npt.NDArray[np.int64]) -> npt.NDArray[np.uint8]:
    """16-bit intensities to 8 bits: the high byte, as libpng's strip_16 gives.

    TensorFlow's PNG decoder (the server's encoded path) reads a 16-bit PNG
    into uint8 the same way, so such files can be sent to it as they are.
    """
    return (np.clip(values, 0, 65535) >> 8).astype(np.uint8)
