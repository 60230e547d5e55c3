"""Images to the served tensor: Pillow decode, EXIF orientation, RGB, resize, uint8.

Usage::

    from medserve_client._preprocess import decode_image, resize_rgb, to_rgb_array

    image = decode_image(Path("scan.jpg").read_bytes(), target_hw=(224, 224), what="scan.jpg")
    tensor = resize_rgb(to_rgb_array(image), (224, 224))      # uint8 (224, 224, 3)

The resize matches the server's encoded path, ``tf.image.resize(method="bilinear",
antialias=True)`` followed by rounding to uint8: Pillow's bilinear filter
widens its support when it downscales (the same triangle kernel, scaled), and
resizing each channel as a float image ("F" mode) avoids the 8-bit rounding
Pillow does between its horizontal and vertical passes. What remains are
floating-point differences at rounding boundaries, at most 1 grey level (see
the integration test ``test_client_resize``). A JPEG that is much larger than
the model's input is decoded in draft mode (DCT scaling) to at least twice the
target size first: faster, and the remaining downscale keeps the antialiasing.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageOps, UnidentifiedImageError

from medserve_client._errors import InvalidInputError

#: Pillow's own default: larger images are refused as likely decompression bombs.
DEFAULT_MAX_PIXELS = 89_478_485

# Modes Pillow converts to RGB by itself without losing meaning; alpha is dropped
# (not composited) because that is what the server's decode_image(channels=3) does.
_DIRECT_RGB_MODES = frozenset(
    {"RGB", "RGBA", "RGBX", "L", "LA", "P", "PA", "1", "CMYK", "YCbCr", "LAB", "HSV", "La", "RGBa"}
)
# 16- and 32-bit integer modes carry 16-bit intensities (Pillow opens 16-bit PNG
# and TIFF as I;16 or I); they are scaled 0..65535 -> 0..255 with rounding.
_WIDE_INT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
_EXIF_ORIENTATION = 0x0112


def decode_image(
    data: bytes,
    *,
    target_hw: tuple[int, int] | None,
    what: str,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Image.Image:
    """Decode encoded image bytes with Pillow, EXIF orientation applied.

    Args:
        data: The encoded file (PNG, JPEG, BMP, TIFF... anything Pillow reads).
        target_hw: Size the image will be resized to; enables JPEG draft mode.
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
            width, height = image.size
            if width * height > max_pixels:
                raise InvalidInputError(
                    f"{what}: {width}x{height} pixels exceed the limit of {max_pixels} "
                    "(a possible decompression bomb); downscale it first or raise max_pixels"
                )
            orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
            if target_hw is not None and image.format == "JPEG":
                _draft(image, target_hw, transposed=orientation in (5, 6, 7, 8))
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
    if orientation != 1:
        image = ImageOps.exif_transpose(image)
    return image


def _draft(image: Image.Image, target_hw: tuple[int, int], *, transposed: bool) -> None:
    """Let libjpeg decode at 1/2, 1/4 or 1/8 scale, keeping at least 2x the target."""
    height, width = target_hw
    if transposed:
        height, width = width, height
    if image.mode in ("RGB", "L") and image.width >= 4 * width and image.height >= 4 * height:
        image.draft(image.mode, (2 * width, 2 * height))


def to_rgb_array(image: Image.Image) -> npt.NDArray[np.uint8]:
    """Any Pillow mode to an RGB uint8 array (H, W, 3), deterministically.

    L/LA/P/RGBA and friends go through Pillow's own conversion (alpha dropped);
    I;16 and I are 16-bit intensities scaled to 8 bits; F is a float in [0, 1].
    """
    if image.mode in _WIDE_INT_MODES:
        wide = np.asarray(image, dtype=np.int64)
        gray = _scale_16_to_8(wide)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if image.mode == "F":
        gray = float_to_uint8(np.asarray(image, dtype=np.float32))
        return np.repeat(gray[:, :, None], 3, axis=2)
    if image.mode not in _DIRECT_RGB_MODES:
        raise InvalidInputError(f"image mode {image.mode!r} is not supported; save it as RGB")
    if image.mode == "RGB":
        return np.asarray(image, dtype=np.uint8)  # No conversion copy for the common case.
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def _scale_16_to_8(values: npt.NDArray[np.int64]) -> npt.NDArray[np.uint8]:
    clipped = np.clip(values, 0, 65535)
    return ((clipped * 255 + 32767) // 65535).astype(np.uint8)


def float_to_uint8(values: npt.NDArray[np.floating]) -> npt.NDArray[np.uint8]:
    """Floats in [0, 1] to uint8 with rounding; NaN or values outside are refused."""
    if not np.isfinite(values).all():
        raise InvalidInputError("float image contains NaN or infinity")
    low, high = float(values.min(initial=0.0)), float(values.max(initial=0.0))
    if low < 0.0 or high > 1.0:
        raise InvalidInputError(
            f"float images must lie in [0, 1], got values in [{low:.3g}, {high:.3g}]; "
            "divide by 255 or pass uint8"
        )
    return np.rint(values * 255.0).astype(np.uint8)


def array_to_rgb(array: npt.NDArray[np.generic], *, what: str) -> npt.NDArray[np.uint8]:
    """A numpy image (HW, HW1, HW3 or HW4; uint8 or float in [0, 1]) to RGB uint8."""
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise InvalidInputError(
            f"{what}: numpy images must be HWC with 1, 3 or 4 channels, got shape {array.shape}"
        )
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise InvalidInputError(f"{what}: empty image of shape {array.shape}")
    rgb: npt.NDArray[np.uint8]
    if array.dtype == np.uint8:
        rgb = array.astype(np.uint8, copy=False)
    elif np.issubdtype(array.dtype, np.floating):
        rgb = float_to_uint8(array.astype(np.float64, copy=False))
    else:
        raise InvalidInputError(
            f"{what}: numpy images must be uint8 or float in [0, 1], got {array.dtype}"
        )
    if rgb.shape[2] == 1:
        rgb = np.repeat(rgb, 3, axis=2)
    return np.ascontiguousarray(rgb[:, :, :3])


def resize_rgb(rgb: npt.NDArray[np.uint8], target_hw: tuple[int, int]) -> npt.NDArray[np.uint8]:
    """Resize an RGB uint8 image like ``tf.image.resize(bilinear, antialias=True)`` + round."""
    height, width = target_hw
    if rgb.shape[:2] == (height, width):
        return rgb
    channels = []
    for index in range(3):
        plane = Image.fromarray(rgb[:, :, index].astype(np.float32))
        resized = plane.resize((width, height), Image.Resampling.BILINEAR)
        channels.append(np.asarray(resized, dtype=np.float32))
    stacked = np.stack(channels, axis=2)
    return np.clip(np.rint(stacked), 0, 255).astype(np.uint8)


def encode_png(rgb: npt.NDArray[np.uint8]) -> bytes:
    """Encode an RGB uint8 array as PNG (lossless, for the encoded entry point)."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
