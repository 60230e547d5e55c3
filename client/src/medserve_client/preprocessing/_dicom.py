"""DICOM to RGB uint8: read (with or without the preamble), one frame, LUTs, polarity.

The rules are listed in the package docstring (:mod:`medserve_client.preprocessing`);
this module implements the DICOM ones. pydicom (the ``[dicom]`` extra) is
imported only when a DICOM input shows up. Messages name the input by the
caller's ``what`` and the file's technical attributes (transfer syntax,
photometric interpretation, frames): never an element value that could be a
patient attribute. pydicom's own warnings and log records can quote such
values, so they are silenced while a file is read and rendered.
"""

from __future__ import annotations

import contextlib
import io
import logging
import threading
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from medserve_client._errors import InvalidInputError

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from medserve_client._models import Window

log = logging.getLogger(__name__)

_MAGIC_OFFSET = 128
_MAGIC = b"DICM"
#: How many bytes :func:`is_dicom_head` needs: the preamble and the magic.
HEAD_BYTES = _MAGIC_OFFSET + len(_MAGIC)
# A dataset stored without the Part 10 preamble starts with its first element:
# the file meta group (0002) or the identifying group (0008), little or big
# endian. Only such files are read with pydicom's force=True: anything else
# (a text file, a ZIP) is not guessed at.
_BARE_GROUPS = (0x0002, 0x0008)
_MONOCHROME1 = "MONOCHROME1"  # The lowest value is white.
_GREY = ("MONOCHROME1", "MONOCHROME2")
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_IMAGE_PIXEL_KEYWORDS = ("Rows", "Columns", "BitsAllocated")
_INSTALL = "pip install 'medserve-client[dicom]'"
# catch_warnings and logger levels are process-wide: one DICOM at a time
# changes them, so concurrent classify_many threads cannot leave them altered.
_QUIET_LOCK = threading.Lock()


def is_dicom_head(head: bytes) -> bool:
    """True when ``head`` (the first bytes of a file, 132 or more) is DICOM.

    Either the Part 10 ``DICM`` magic after the 128-byte preamble, or a bare
    dataset whose first tag is in group 0002 or 0008 (files from older
    archives, written without preamble and file meta).
    """
    if head[_MAGIC_OFFSET : _MAGIC_OFFSET + 4] == _MAGIC:
        return True
    if len(head) < 8:
        return False
    for order in ("little", "big"):
        group = int.from_bytes(head[0:2], order)
        element = int.from_bytes(head[2:4], order)
        if group in _BARE_GROUPS and element < 0x0100:
            return True
    return False


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
        raise InvalidInputError(f"DICOM input needs pydicom: {_INSTALL}") from exc
    return pydicom


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence pydicom's warnings and log records (they may quote element values)."""
    logger = logging.getLogger("pydicom")  # A level on the parent silences pydicom.*.
    with _QUIET_LOCK, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        previous = logger.level
        logger.setLevel(logging.CRITICAL + 1)
        try:
            yield
        finally:
            logger.setLevel(previous)
    if caught:
        log.debug("pydicom raised %d warning(s) while reading DICOM, not shown", len(caught))


def read_dataset(data: bytes, *, what: str) -> Dataset:
    """Parse a DICOM file (Part 10, or a bare dataset that :func:`is_dicom_head` accepts)."""
    pydicom = _pydicom()
    bare = data[_MAGIC_OFFSET : _MAGIC_OFFSET + 4] != _MAGIC
    with _quiet():
        try:
            dataset: Dataset = pydicom.dcmread(io.BytesIO(data), force=bare)
        except Exception as exc:  # pydicom raises many types for damaged files
            raise InvalidInputError(
                f"{what}: not a readable DICOM file ({type(exc).__name__}); "
                "check that it is complete"
            ) from exc
        if len(dataset) == 0:
            raise InvalidInputError(f"{what}: not a readable DICOM file (no elements)")
        _ensure_transfer_syntax(dataset)
    return dataset


def _ensure_transfer_syntax(dataset: Dataset) -> None:
    """Give a file without (0002,0010) the transfer syntax it was actually read with."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    meta = getattr(dataset, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" in meta:
        return
    implicit, little = dataset.original_encoding
    if implicit is None or little is None:
        return  # pydicom could not tell; decoding will say so.
    if meta is None:
        dataset.file_meta = meta = FileMetaDataset()
    if implicit:
        meta.TransferSyntaxUID = ImplicitVRLittleEndian
    else:
        meta.TransferSyntaxUID = ExplicitVRLittleEndian if little else ExplicitVRBigEndian


def dicom_to_rgb(
    dataset: Dataset, *, what: str, frame: int | None = None, window: Window | None = None
) -> npt.NDArray[np.uint8]:
    """Render one frame of a DICOM dataset as RGB uint8 (rows, columns, 3).

    Args:
        dataset: The parsed DICOM dataset.
        what: How to name the input in error messages.
        frame: 0-based frame; ``None`` takes the middle frame of a multi-frame file.
        window: Overrides the file's VOI LUT / window centre and width (greyscale).

    Raises:
        InvalidInputError: No pixel data, no decoder for its transfer syntax, a
            frame out of range, or a layout this pipeline does not render.
    """
    _pydicom()
    with _quiet():
        if not any(keyword in dataset for keyword in _PIXEL_KEYWORDS):
            raise InvalidInputError(
                f"{what}: the DICOM file has no pixel data (not an image: a report, a plan, "
                "a waveform...)"
            )
        # A dataset read without file meta (no preamble) was read with some
        # encoding; its pixel data is in that transfer syntax.
        _ensure_transfer_syntax(dataset)
        _check_decoder(dataset, what=what)
        pixels = _decode_frame(dataset, what=what, frame=frame)
        photometric = str(dataset.get("PhotometricInterpretation", "MONOCHROME2")).upper()
        try:
            if photometric in _GREY:
                grey = _grey_to_uint8(pixels, dataset, window=window, what=what)
                if photometric == _MONOCHROME1:
                    # The lowest value is white: invert so bright means dense, as
                    # in MONOCHROME2 (exactly 255 - the MONOCHROME2 rendering).
                    grey = (255 - grey).astype(np.uint8)
                return np.repeat(grey[:, :, None], 3, axis=2)
            return _colour_to_uint8(pixels, dataset, photometric=photometric, what=what)
        except InvalidInputError:
            raise
        except Exception as exc:  # A broken LUT, window or palette element.
            raise InvalidInputError(
                f"{what}: could not apply the {photometric} presentation LUTs "
                f"({type(exc).__name__})"
            ) from exc


def _transfer_syntax(dataset: Dataset) -> Any:
    meta = getattr(dataset, "file_meta", None)
    return meta.get("TransferSyntaxUID") if meta is not None else None


def _check_decoder(dataset: Dataset, *, what: str) -> None:
    """Refuse early, naming what to install, when no decoder is available."""
    from pydicom.pixels.decoders.base import get_decoder

    uid = _transfer_syntax(dataset)
    if uid is None or not uid.is_compressed:
        return
    try:
        decoder = get_decoder(uid)
    except NotImplementedError as exc:
        raise InvalidInputError(
            f"{what}: transfer syntax {uid.name} ({uid}) is not supported by pydicom; "
            "ask the archive to send it uncompressed or in another transfer syntax"
        ) from exc
    if not decoder.is_available:
        raise InvalidInputError(
            f"{what}: compressed transfer syntax {uid.name} ({uid}) has no installed "
            f"decoder; {_INSTALL} or install one of: {_missing(decoder)}"
        )


def _missing(decoder: Any) -> str:
    """pydicom's 'label - requires a and b' strings as an install hint."""
    entries = decoder.missing_dependencies
    return "; ".join(entry.split(" - requires ", 1)[-1] for entry in entries) or "a plugin"


def _decode_frame(dataset: Dataset, *, what: str, frame: int | None) -> npt.NDArray[Any]:
    """Decode only the chosen frame (the middle one of a multi-frame file by default)."""
    from pydicom.pixels import pixel_array

    missing = [keyword for keyword in _IMAGE_PIXEL_KEYWORDS if keyword not in dataset]
    if missing:
        raise InvalidInputError(
            f"{what}: the DICOM file has pixel data but no {', '.join(missing)} "
            "(an incomplete Image Pixel module); it cannot be rendered"
        )
    try:
        frames = int(dataset.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(
            f"{what}: the DICOM file's NumberOfFrames is not a number; it cannot be rendered"
        ) from exc
    if frame is not None and frame >= frames:
        raise InvalidInputError(
            f"{what}: frame {frame} is out of range 0..{frames - 1} "
            f"(the file has {frames} frame{'s' if frames > 1 else ''})"
        )
    index = None
    if frames > 1:
        # The middle frame of a cine loop or a volume is the one most likely to
        # show the anatomy of interest; the classifier sees one picture per file.
        index = frames // 2 if frame is None else frame
    try:
        return np.asarray(pixel_array(dataset, index=index))
    except Exception as exc:  # pydicom and its plugins raise many types.
        raise InvalidInputError(
            f"{what}: the DICOM pixel data did not decode ({type(exc).__name__}, "
            f"{_syntax_name(dataset)}){_other_decoders(dataset)}"
        ) from exc


def _syntax_name(dataset: Dataset) -> str:
    uid = _transfer_syntax(dataset)
    return f"{uid.name} ({uid})" if uid is not None else "no transfer syntax"


def _other_decoders(dataset: Dataset) -> str:
    """Advice after a failed decode: other plugins for this syntax, or damage."""
    from pydicom.pixels.decoders.base import get_decoder

    uid = _transfer_syntax(dataset)
    if uid is not None and uid.is_compressed:
        try:
            missing = _missing(get_decoder(uid))
        except NotImplementedError:
            missing = ""
        if missing:
            return f"; another decoder may read it, install one of: {missing}"
    return "; the file may be damaged or truncated"


def _grey_to_uint8(
    pixels: npt.NDArray[Any], dataset: Dataset, *, window: Window | None, what: str
) -> npt.NDArray[np.uint8]:
    """Modality LUT, then the VOI LUT or window (pydicom's own functions), to 0..255."""
    if pixels.ndim != 2:
        raise InvalidInputError(f"{what}: greyscale frame has shape {pixels.shape}; expected 2-D")
    values = _modality_lut(pixels, dataset)
    view = dataset if window is None else _window_view(dataset, window)
    unit = _voi_to_unit(values, view)
    return np.round(unit * 255.0).astype(np.uint8)


def _modality_lut(pixels: npt.NDArray[Any], dataset: Dataset) -> npt.NDArray[Any]:
    """Stored values to modality units (Hounsfield for CT): slope/intercept or a LUT."""
    from pydicom.pixels import apply_modality_lut

    return np.asarray(apply_modality_lut(pixels, dataset))


def _window_view(dataset: Dataset, window: Window) -> Dataset:
    """A small dataset with the attributes windowing reads and the caller's window."""
    from pydicom.dataset import Dataset

    view = Dataset()
    for keyword in (
        "PhotometricInterpretation",
        "BitsStored",
        "PixelRepresentation",
        "RescaleSlope",
        "RescaleIntercept",
        "ModalityLUTSequence",
    ):
        if keyword in dataset:
            setattr(view, keyword, dataset[keyword].value)
    view.WindowCenter = window.center
    view.WindowWidth = window.width
    view.VOILUTFunction = "LINEAR"
    return view


def _voi_to_unit(values: npt.NDArray[Any], dataset: Dataset) -> npt.NDArray[np.float64]:
    """The VOI transform pydicom applies, its output range mapped onto [0, 1]."""
    from pydicom.pixels import apply_voi, apply_windowing

    sequence = dataset.get("VOILUTSequence")
    if sequence:
        # A VOI LUT is indexed by integer modality values: round, not truncate.
        indices = np.rint(values).astype(np.int64)
        descriptor = sequence[0].LUTDescriptor
        entries, first = int(descriptor[0] or 65536), int(descriptor[1])
        table = apply_voi(np.arange(first, first + entries, dtype=np.int64), dataset, index=0)
        voi = np.asarray(apply_voi(indices, dataset, index=0), dtype=np.float64)
        return _to_unit(voi, float(table.min()), float(table.max()))
    if "WindowCenter" in dataset and "WindowWidth" in dataset:
        try:
            windowed = np.asarray(apply_windowing(values, dataset, index=0), dtype=np.float64)
            low, high = apply_windowing(np.array([-1e15, 1e15]), dataset, index=0)
        except ValueError:
            # A degenerate stored window (width < 1 for LINEAR): show the data.
            log.debug("unusable stored window; stretching the data instead")
        else:
            return _to_unit(windowed, float(low), float(high))
    data = values.astype(np.float64)
    return _to_unit(data, float(data.min()), float(data.max()))


def _to_unit(values: npt.NDArray[np.float64], low: float, high: float) -> npt.NDArray[np.float64]:
    if high <= low:
        return np.zeros(values.shape, dtype=np.float64)
    return np.clip((values - low) / (high - low), 0.0, 1.0)


def _colour_to_uint8(
    pixels: npt.NDArray[Any], dataset: Dataset, *, photometric: str, what: str
) -> npt.NDArray[np.uint8]:
    """RGB and YBR (converted to RGB by pydicom), PALETTE COLOR through its LUT."""
    from pydicom.pixels import apply_color_lut

    bits = int(dataset.get("BitsStored", 8) or 8)
    if photometric == "PALETTE COLOR":
        pixels = np.asarray(apply_color_lut(pixels, dataset))
        bits = 8 * pixels.dtype.itemsize
    if pixels.ndim != 3 or pixels.shape[-1] != 3:
        raise InvalidInputError(
            f"{what}: {photometric} frame has shape {pixels.shape}; expected (rows, columns, 3)"
        )
    if pixels.dtype == np.uint8 and bits <= 8:
        return np.ascontiguousarray(pixels)
    unit = _to_unit(pixels.astype(np.float64), 0.0, float(2**bits - 1))
    return np.round(unit * 255.0).astype(np.uint8)
