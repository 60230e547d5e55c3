"""DICOM to an 8-bit picture, the way a radiologist's viewer would show it.

Usage::

    grey_or_rgb = dicom_to_uint8(Path("scan.dcm"))   # uint8 (H, W) or (H, W, 3)

Steps for greyscale images: the modality LUT (rescale slope and intercept, or a
Modality LUT Sequence), then the VOI LUT Sequence or the window centre/width
(the first one when several are stored), scaled to 0..255; MONOCHROME1 is
inverted so that bright always means dense. Without any VOI information the
image is min-max scaled. Colour images (RGB, YBR converted to RGB by pydicom,
PALETTE COLOR through its LUT) are scaled from their bit depth to 8 bits.

Multi-frame images (a cine loop, a volume stored in one file): the **middle
frame** is taken, as the one most likely to show the anatomy of interest; the
classifier sees one picture per file.

Errors are :class:`DicomDecodeError` with a message that never quotes element
values, so no patient attribute can leak into a log line.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

log = logging.getLogger(__name__)

_GREY = ("MONOCHROME1", "MONOCHROME2")


class DicomDecodeError(Exception):
    """A DICOM file that cannot be turned into a picture; the message is safe to log."""


def dicom_to_uint8(path: Path) -> np.ndarray:
    """Read a DICOM file and render it as an 8-bit picture.

    Args:
        path: A DICOM file (Part 10 with the DICM preamble, or a bare dataset).

    Returns:
        ``uint8`` array, ``(rows, columns)`` for greyscale or
        ``(rows, columns, 3)`` for colour.

    Raises:
        DicomDecodeError: Not DICOM, no pixel data, a compressed transfer syntax
            without an installed decoder (the message names the plugin to
            install), or pixel data that does not decode.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    # pydicom's own warnings and log records can quote element values (a
    # malformed patient name, for one) or carry plugin tracebacks; silence them
    # here and report only our own, value-free message.
    with warnings.catch_warnings(record=True) as caught, _quiet_pydicom_logger():
        warnings.simplefilter("always")
        try:
            ds = pydicom.dcmread(path, force=True)
        except (InvalidDicomError, EOFError, OSError, ValueError, TypeError, KeyError) as exc:
            raise DicomDecodeError(f"not a readable DICOM file ({type(exc).__name__})") from exc
        if "PixelData" not in ds and "FloatPixelData" not in ds:
            raise DicomDecodeError("DICOM file has no pixel data (not an image object)")
        _check_decoder(ds)
        frame = _middle_frame(ds)
        picture = _render(frame, ds)
    if caught:
        log.debug("%s: pydicom raised %d warning(s), not shown", path, len(caught))
    return picture


@contextlib.contextmanager
def _quiet_pydicom_logger() -> Iterator[None]:
    # A level on the parent silences its children too (pydicom.pixels.*).
    logger = logging.getLogger("pydicom")
    previous = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(previous)


def _check_decoder(ds: Dataset) -> None:
    """Fail early, naming the plugin to install, when no decoder is available."""
    from pydicom.pixels.decoders.base import get_decoder

    meta = getattr(ds, "file_meta", None)
    uid = getattr(meta, "TransferSyntaxUID", None) if meta is not None else None
    if uid is None or not uid.is_compressed:
        return
    try:
        decoder = get_decoder(uid)
    except NotImplementedError as exc:
        raise DicomDecodeError(
            f"transfer syntax {uid.name} ({uid}) is not supported by pydicom"
        ) from exc
    if not decoder.is_available:
        raise DicomDecodeError(
            f"compressed transfer syntax {uid.name} ({uid}) has no installed decoder; "
            f"install one of: {_plugin_hint(decoder.missing_dependencies)}"
        )


def _plugin_hint(missing: list[str]) -> str:
    """Turn pydicom's 'label - requires a and b' strings into an install hint."""
    return "; ".join(entry.split(" - requires ", 1)[-1] for entry in missing) or "a plugin"


def _middle_frame(ds: Dataset) -> np.ndarray:
    """Decode only the middle frame of the pixel data (the only frame for most files)."""
    from pydicom.pixels import pixel_array

    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    try:
        return np.asarray(pixel_array(ds, index=frames // 2 if frames > 1 else None))
    except Exception as exc:  # pydicom and its plugins raise many types.
        missing = _missing_for(ds)
        hint = f"; installing another decoder may help: {missing}" if missing else ""
        raise DicomDecodeError(f"pixel data did not decode ({type(exc).__name__}){hint}") from exc


def _missing_for(ds: Dataset) -> str:
    from pydicom.pixels.decoders.base import get_decoder

    uid = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if uid is None or not uid.is_compressed:
        return ""
    try:
        return _plugin_hint(get_decoder(uid).missing_dependencies)
    except NotImplementedError:
        return ""


def _render(frame: np.ndarray, ds: Dataset) -> np.ndarray:
    """Apply the presentation pipeline to one decoded frame."""
    from pydicom.pixels import apply_color_lut

    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2")).upper()
    try:
        if photometric in _GREY:
            return _render_grey(frame, ds, invert=photometric == "MONOCHROME1")
        bits = int(getattr(ds, "BitsStored", 8) or 8)
        if photometric == "PALETTE COLOR":
            frame = apply_color_lut(frame, ds)
            bits = 8 * frame.dtype.itemsize
        return _scale_colour(frame, bits)
    except DicomDecodeError:
        raise
    except Exception as exc:  # a broken LUT or window element.
        raise DicomDecodeError(
            f"could not apply the {photometric} presentation LUTs ({type(exc).__name__})"
        ) from exc


def _render_grey(frame: np.ndarray, ds: Dataset, *, invert: bool) -> np.ndarray:
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    if frame.ndim != 2:
        raise DicomDecodeError(f"greyscale frame has shape {frame.shape}; expected 2-D")
    values = apply_modality_lut(frame, ds)
    low_high = _voi_output_range(ds)
    if low_high is None:
        # No VOI information: stretch what is there.
        values = values.astype(np.float64)
        low, high = float(values.min()), float(values.max())
    else:
        values = apply_voi_lut(values, ds, index=0).astype(np.float64)
        low, high = low_high
    scaled = _to_unit(values, low, high)
    if invert:
        # MONOCHROME1: the lowest value is white; flip so bright means dense.
        scaled = 1.0 - scaled
    return np.round(scaled * 255.0).astype(np.uint8)


def _voi_output_range(ds: Dataset) -> tuple[float, float] | None:
    """The output range of the VOI transform that apply_voi_lut will use, or None.

    Probing pydicom's own functions with extreme inputs keeps us in step with
    its rules (signedness, rescale, LUT bit depth) instead of copying them.
    """
    from pydicom.pixels import apply_voi, apply_windowing

    sequence = getattr(ds, "VOILUTSequence", None)
    if sequence and getattr(sequence[0], "LUTDescriptor", None) is not None:
        entries, first = (
            int(sequence[0].LUTDescriptor[0] or 65536),
            int(sequence[0].LUTDescriptor[1]),
        )
        table = apply_voi(np.arange(first, first + entries, dtype=np.int64), ds, index=0)
        return float(table.min()), float(table.max())
    if getattr(ds, "WindowCenter", None) is not None and getattr(ds, "WindowWidth", None):
        probe = apply_windowing(np.array([-1e15, 1e15]), ds, index=0)
        return float(probe[0]), float(probe[1])
    return None


def _to_unit(values: np.ndarray, low: float, high: float) -> np.ndarray:
    if high <= low:
        return np.zeros_like(values, dtype=np.float64)
    return np.clip((values - low) / (high - low), 0.0, 1.0)


def _scale_colour(frame: np.ndarray, bits: int) -> np.ndarray:
    if frame.ndim != 3 or frame.shape[-1] != 3:
        raise DicomDecodeError(f"colour frame has shape {frame.shape}; expected (rows, cols, 3)")
    if frame.dtype == np.uint8 and bits <= 8:
        return frame
    high = float(2**bits - 1)
    return np.round(_to_unit(frame.astype(np.float64), 0.0, high) * 255.0).astype(np.uint8)
