"""Numpy images to RGB uint8, and the one resize of the pipeline.

The rules are listed in the package docstring (:mod:`medserve_client.preprocessing`).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from PIL import Image

from medserve_client._errors import InvalidInputError


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


def resize(rgb: npt.NDArray[np.uint8], size: tuple[int, int]) -> npt.NDArray[np.uint8]:
    """Resize RGB uint8 to ``size`` (height, width): antialiased bilinear, then round.

    Each channel is resized as a float image (Pillow's "F" mode), so there is
    no 8-bit rounding between the horizontal and vertical passes; Pillow's
    bilinear filter widens its support when it downscales, as
    ``tf.image.resize(method="bilinear", antialias=True)`` does on the server.
    A grey image (three equal channels) is resized once and replicated: the
    same result for a third of the work. The aspect ratio is not kept.
    """
    height, width = size
    if rgb.shape[:2] == (height, width):
        return rgb
    grey = bool(np.array_equal(rgb[:, :, 0], rgb[:, :, 1])) and bool(
        np.array_equal(rgb[:, :, 0], rgb[:, :, 2])
    )
    planes = [_resize_plane(rgb[:, :, 0], width, height)]
    if grey:
        planes *= 3
    else:
        planes += [_resize_plane(rgb[:, :, index], width, height) for index in (1, 2)]
    return np.stack(planes, axis=2)


def _resize_plane(plane: npt.NDArray[np.uint8], width: int, height: int) -> npt.NDArray[np.uint8]:
    image = Image.fromarray(plane.astype(np.float32))
    resized = np.asarray(image.resize((width, height), Image.Resampling.BILINEAR))
    return np.clip(np.rint(resized), 0, 255).astype(np.uint8)
