"""The one pixel pipeline: every source to the uint8 image the model takes.

Usage::

    from medserve_client.preprocessing import to_model_input

    pixels = to_model_input("scan.dcm", (224, 224))     # uint8 (224, 224, 3)
    pixels = to_model_input(pil_image, (224, 224))      # PIL, numpy, bytes, pydicom too

Training (``medserve``) and the client call this same code, so the pixels a
model was validated on are the pixels it is served. No TensorFlow; pydicom
only when a DICOM source shows up (the ``[dicom]`` extra, which also installs
the pylibjpeg decoders for compressed transfer syntaxes).

Steps: **decode** by the kind of source, to **RGB uint8** at the source's own
size (:func:`to_rgb`), then **resize** to the served size (:func:`resize`).

Sources and how each is recognised:

- a path (``str`` or ``os.PathLike``) or encoded bytes: DICOM when the bytes
  carry the Part 10 ``DICM`` magic after the 128-byte preamble, or when they
  start with a group 0002/0008 element (a dataset written without preamble by
  an older archive; only then is pydicom's ``force=True`` used); otherwise an
  image Pillow reads (PNG, JPEG, BMP, TIFF, ...);
- a PIL image; a numpy array ``HW``, ``HW1``, ``HW3`` or ``HW4``, uint8 or
  float in [0, 1] (rounded to uint8; values outside are refused);
- a ``pydicom.Dataset``, or a :class:`~medserve_client.DicomSource` that picks a
  frame or overrides the window.

The rules, each decided once:

==================  ==========================================================
rule                what the pipeline does
==================  ==========================================================
EXIF orientation    applied (``ImageOps.exif_transpose``): the picture is
                    upright as every viewer shows it.
16-bit greyscale    PNG/TIFF ``I;16``/``I``: the high byte (``v >> 8``,
                    clipped to 0..65535 first), as libpng's ``strip_16``.
palette, alpha      Pillow's own conversion to RGB; alpha is dropped, not
                    composited (``P``, ``PA``, ``LA``, ``RGBA``).
JPEG                decoded at full scale, however large (no reduced-scale
                    DCT decoding: it moves pixels away from the server's).
DICOM frames        the middle frame (``frames // 2``) of a multi-frame file,
                    unless ``DicomSource(frame=N)`` asks for another.
DICOM greyscale     pydicom's modality LUT (rescale slope/intercept or LUT),
                    then pydicom's VOI LUT Sequence (modality values rounded
                    to the nearest index) or ``apply_windowing`` (window
                    centre/width, first of several, LINEAR, LINEAR_EXACT or
                    SIGMOID); the transform's output range maps onto 0..255,
                    rounded. No VOI data, or a window pydicom refuses: the
                    frame's own min..max. ``DicomSource(window=...)`` replaces
                    the stored VOI with a LINEAR window.
MONOCHROME1         inverted after rendering (``255 - v``): bright is dense.
PALETTE COLOR       pydicom's ``apply_color_lut``, scaled from the LUT's
                    8 or 16 bits.
RGB/YBR DICOM       pydicom's RGB conversion, scaled from BitsStored to 8 bits.
resize              to ``(height, width)``, aspect ratio not kept: bilinear
                    with antialiasing on float channels, rounded once.
==================  ==========================================================

The server's encoded path (``<model>_encoded``: bytes decoded by TensorFlow
inside Triton) follows these rules within measured bounds, tested in
``tests/unit/test_pixel_parity.py``: its pixels differ from the pipeline's by
at most 1 grey level on at most 1% of pixels (floating-point rounding of the
two resizes; PNG, JPEG, and DICOM rendered to PNG alike). It ignores EXIF and
knows no DICOM, so the client sends such sources as an upright, rendered PNG
instead of the file's bytes.

Every refusal is an :class:`~medserve_client.InvalidInputError` naming the
source by its path (or kind) and saying what to do; never a patient
attribute. pydicom's warnings, which can quote element values, are silenced.
"""

from medserve_client._errors import InvalidInputError
from medserve_client.preprocessing._arrays import resize
from medserve_client.preprocessing._raster import DEFAULT_MAX_PIXELS
from medserve_client.preprocessing._sources import is_dicom, to_model_input, to_rgb

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "InvalidInputError",
    "is_dicom",
    "resize",
    "to_model_input",
    "to_rgb",
]
