"""DICOM to an 8-bit RGB image: modality LUT, VOI LUT or window, MONOCHROME1, frames.

Usage::

    from medserve_client._dicom import dicom_to_rgb, read_dataset

    dataset = read_dataset(Path("ct.dcm").read_bytes(), what="ct.dcm")
    rgb = dicom_to_rgb(dataset, what="ct.dcm", frame=None, window=None)  # uint8 (H, W, 3)

pydicom is an optional dependency (the ``[dicom]`` extra) and is imported
only when a DICOM input shows up. Messages name the input by the caller's
``what`` and the file's technical attributes (transfer syntax, photometric
interpretation, frames): never a patient attribute.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from medserve_client._errors import InvalidInputError
from medserve_client._models import Window

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

# Which package decodes which compressed transfer syntax (pydicom's pixel data
# plugins), so the error can say exactly what to install.
_PLUGINS = {
    "1.2.840.10008.1.2.4.50": "pillow or pylibjpeg-libjpeg",  # JPEG baseline
    "1.2.840.10008.1.2.4.51": "pylibjpeg-libjpeg (12-bit JPEG)",  # JPEG extended
    "1.2.840.10008.1.2.4.57": "pylibjpeg-libjpeg",  # JPEG lossless
    "1.2.840.10008.1.2.4.70": "pylibjpeg-libjpeg",  # JPEG lossless SV1
    "1.2.840.10008.1.2.4.80": "pylibjpeg-libjpeg",  # JPEG-LS lossless
    "1.2.840.10008.1.2.4.81": "pylibjpeg-libjpeg",  # JPEG-LS near-lossless
    "1.2.840.10008.1.2.4.90": "pylibjpeg-openjpeg",  # JPEG 2000 lossless
    "1.2.840.10008.1.2.4.91": "pylibjpeg-openjpeg",  # JPEG 2000
    "1.2.840.10008.1.2.5": "pylibjpeg-rle",  # RLE lossless
    "1.2.840.10008.1.2.4.201": "pylibjpeg-openjpeg",  # HTJ2K
    "1.2.840.10008.1.2.4.202": "pylibjpeg-openjpeg",  # HTJ2K RPCL
    "1.2.840.10008.1.2.4.203": "pylibjpeg-openjpeg",  # HTJ2K
}
_DICOM_MAGIC_OFFSET = 128


def is_dicom_bytes(data: bytes) -> bool:
    """True when ``data`` starts with the DICOM Part 10 preamble and ``DICM`` magic."""
    return data[_DICOM_MAGIC_OFFSET : _DICOM_MAGIC_OFFSET + 4] == b"DICM"


def is_dataset(value: object) -> bool:
    """True for a ``pydicom.Dataset`` without importing pydicom when it is absent."""
    if not (type(value).__module__ or "").startswith("pydicom"):
        return False
    from pydicom.dataset import Dataset

    return isinstance(value, Dataset)


def _pydicom() -> Any:
    try:
        import pydicom
    except ModuleNotFoundError as exc:
        raise InvalidInputError(
            "DICOM input needs pydicom: pip install 'medserve-client[dicom]'"
        ) from exc
    return pydicom


def read_dataset(data: bytes, *, what: str) -> Dataset:
    """Parse DICOM bytes (Part 10 file) into a dataset."""
    pydicom = _pydicom()
    try:
        dataset: Dataset = pydicom.dcmread(io.BytesIO(data))
        return dataset
    except Exception as exc:  # pydicom raises many types for damaged files
        raise InvalidInputError(
            f"{what}: not a readable DICOM file ({type(exc).__name__}); check that it is complete"
        ) from exc


def dicom_to_rgb(
    dataset: Dataset, *, what: str, frame: int | None = None, window: Window | None = None
) -> npt.NDArray[np.uint8]:
    """Render one frame of a DICOM dataset as an 8-bit RGB image.

    Args:
        dataset: The parsed DICOM dataset.
        what: How to name the input in error messages.
        frame: 0-based frame; required when the file has more than one.
        window: Overrides the file's VOI LUT / window centre and width.

    Returns:
        uint8 array (rows, columns, 3).

    Raises:
        InvalidInputError: No pixel data, no decoder for its transfer syntax,
            a multi-frame file without ``frame``, or an unsupported layout.
    """
    pixels = _pixel_array(dataset, what=what)
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    samples = int(dataset.get("SamplesPerPixel", 1) or 1)
    pixels = _select_frame(pixels, frames=frames, frame=frame, what=what)
    photometric = str(dataset.get("PhotometricInterpretation", "MONOCHROME2"))
    if samples == 3:
        return _color_to_uint8(pixels, dataset)
    if samples != 1:
        raise InvalidInputError(f"{what}: {samples} samples per pixel are not supported")
    gray = _grayscale_to_uint8(pixels, dataset, window=window)
    if photometric == "MONOCHROME1":
        # MONOCHROME1 means the lowest value is white: invert so the model sees
        # the same polarity as MONOCHROME2 images.
        gray = (255 - gray).astype(np.uint8)
    return np.repeat(gray[:, :, None], 3, axis=2)


def _pixel_array(dataset: Dataset, *, what: str) -> npt.NDArray[Any]:
    if "PixelData" not in dataset:
        raise InvalidInputError(f"{what}: the DICOM file has no pixel data (not an image)")
    syntax = _transfer_syntax(dataset)
    try:
        return np.asarray(dataset.pixel_array)
    except Exception as exc:  # pydicom: RuntimeError/NotImplementedError/ValueError
        if syntax in _PLUGINS:
            raise InvalidInputError(
                f"{what}: cannot decode the compressed transfer syntax {syntax}; "
                f"install {_PLUGINS[syntax]} (pip install {_PLUGINS[syntax].split()[0]})"
            ) from exc
        raise InvalidInputError(
            f"{what}: cannot read the DICOM pixel data ({type(exc).__name__}, "
            f"transfer syntax {syntax})"
        ) from exc


def _transfer_syntax(dataset: Dataset) -> str:
    meta = getattr(dataset, "file_meta", None)
    uid = meta.get("TransferSyntaxUID") if meta is not None else None
    return str(uid) if uid is not None else "unknown"


def _select_frame(
    pixels: npt.NDArray[Any], *, frames: int, frame: int | None, what: str
) -> npt.NDArray[Any]:
    if frames <= 1:
        if frame not in (None, 0):
            raise InvalidInputError(f"{what}: frame {frame} requested but the file has 1 frame")
        return pixels
    if frame is None:
        raise InvalidInputError(
            f"{what}: the DICOM file has {frames} frames; choose one with "
            f"DicomSource(..., frame=N), N in 0..{frames - 1}"
        )
    if frame >= frames:
        raise InvalidInputError(f"{what}: frame {frame} is out of range 0..{frames - 1}")
    return pixels[frame]


def _grayscale_to_uint8(
    pixels: npt.NDArray[Any], dataset: Dataset, *, window: Window | None
) -> npt.NDArray[np.uint8]:
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    values = np.asarray(apply_modality_lut(pixels, dataset), dtype=np.float64)
    if window is not None:
        return _linear_window(values, window.center, window.width)
    if "VOILUTSequence" in dataset:
        # A VOI LUT is indexed by integer modality values; pydicom warns on floats.
        indices = np.rint(values).astype(np.int64)
        voi = np.asarray(apply_voi_lut(indices, dataset, index=0), dtype=np.float64)
        descriptor = dataset.VOILUTSequence[0].LUTDescriptor
        bits = int(descriptor[2])
        return np.clip(np.rint(voi * 255.0 / (2**bits - 1)), 0, 255).astype(np.uint8)
    center, width = dataset.get("WindowCenter"), dataset.get("WindowWidth")
    if center is not None and width is not None:
        # Multi-valued window attributes list alternatives: the first is the default.
        center = center[0] if _is_multi(center) else center
        width = width[0] if _is_multi(width) else width
        if float(width) >= 1:
            return _linear_window(values, float(center), float(width))
    return _min_max(values)


def _is_multi(value: Any) -> bool:
    return hasattr(value, "__len__") and not isinstance(value, str | bytes)


def _linear_window(
    values: npt.NDArray[np.float64], center: float, width: float
) -> npt.NDArray[np.uint8]:
    """DICOM PS3.3 C.11.2.1.2.1 linear window onto 0..255."""
    if width <= 1.0:  # The standard's degenerate window: a threshold.
        return np.where(values > center - 0.5, 255, 0).astype(np.uint8)
    scaled = ((values - (center - 0.5)) / (width - 1.0) + 0.5) * 255.0
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _min_max(values: npt.NDArray[np.float64]) -> npt.NDArray[np.uint8]:
    """No window in the file: stretch the full range of this image onto 0..255."""
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    return np.rint((values - low) * (255.0 / (high - low))).astype(np.uint8)


def _color_to_uint8(pixels: npt.NDArray[Any], dataset: Dataset) -> npt.NDArray[np.uint8]:
    """RGB DICOM (pydicom already converted YBR to RGB): scale stored bits to 8."""
    bits = int(dataset.get("BitsStored", 8) or 8)
    if bits <= 8:
        return np.ascontiguousarray(pixels.astype(np.uint8))
    scaled = np.rint(pixels.astype(np.float64) * (255.0 / (2**bits - 1)))
    return np.clip(scaled, 0, 255).astype(np.uint8)
