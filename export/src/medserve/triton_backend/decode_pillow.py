"""Triton Python-backend decoder: encoded image bytes -> uint8 RGB of the served size, with Pillow.

Usage (the exporter copies this file next to the TensorFlow decoder)::

    <repo>/medcnn_preprocess/1/decode_pillow.py        # this file
    <repo>/medcnn_preprocess/configs/onnx-gpu.pbtxt    # backend "python",
        default_model_filename "decode_pillow.py", parameters max_pixels

    # or in process, as medserve verify and the tests do:
    image = decode(data, height=224, width=224, max_pixels=50_000_000)

Why: the Triton images that run ``model.onnx`` (25.03 and later) have no
TensorFlow backend, so the TensorFlow SavedModel decoder cannot run there. This
file does the same job with Pillow and numpy only, the same rules as the
TensorFlow decoder: the first frame, three channels (grey becomes RGB, alpha
is dropped), 16-bit samples reduced to their high byte, no EXIF rotation,
bilinear resize with antialiasing on float channels (Pillow's ``BILINEAR``
filters over the whole source footprint when it downscales, like
``tf.image.resize(..., antialias=True)``), rounded to uint8. Its pixels are
exactly those of the client's and training's pipeline
(``medserve_client.preprocessing``; ``tests/unit/test_pixel_parity.py``) and
match the TensorFlow decoder within the bound the tests document
(``tests/unit/test_decode_pillow.py``).

Decompression bombs: ``Image.open`` reads only the header; the declared
width x height is checked against the config parameter ``max_pixels`` before
any pixel is decoded, and a larger image fails its request with a message
that says so.

This file does not import ``medserve``: the ONNX deployments run it inside
NVIDIA's Triton image, where medserve is not installed (the classifier's
``model.py`` runs only on the local server, with the installed package). Logs
carry counts and reasons, never pixels.
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np

try:  # Only exists inside Triton's Python-backend stub.
    import triton_python_backend_utils as pb_utils
except ImportError:  # pragma: no cover - imported outside Triton (verify, unit tests)
    pb_utils = None

MAX_PIXELS_PARAMETER = "max_pixels"
# The formats the TensorFlow decoder's guard admits (medserve.decode_guard);
# Pillow would also open TIFF, WebP and more, which the other decoder refuses.
FORMATS = ("PNG", "JPEG", "GIF", "BMP")
# Message fragments shared with the TensorFlow decoder (medserve.decode_guard
# REFUSAL_TEXT and FORMAT_TEXT), which the client and the tests look for; this
# file stands alone in the model repository, and a unit test keeps the two equal.
REFUSAL_TEXT = "exceeds max_pixels"
FORMAT_TEXT = "is not a PNG, JPEG, GIF or BMP file"


class DecodeError(ValueError):
    """One encoded image cannot be served; the message goes back to its client."""


def decode(
    data: bytes, *, height: int, width: int, max_pixels: int, input_name: str = "image_bytes"
) -> np.ndarray:
    """Decode one PNG/JPEG/GIF/BMP file to uint8 ``[height, width, 3]``.

    Raises:
        DecodeError: The bytes are not a readable image of those formats, or
            the header declares more than ``max_pixels`` pixels.
    """
    from PIL import Image, UnidentifiedImageError

    # Pillow's own cap would raise inside open() at twice its limit; ours
    # below is the one that applies, with the same message as the TF decoder.
    Image.MAX_IMAGE_PIXELS = None
    try:
        image = Image.open(io.BytesIO(data), formats=FORMATS)  # Reads the header only.
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DecodeError(f"{input_name} {FORMAT_TEXT}") from exc
    pixels = image.width * image.height
    if pixels > max_pixels:
        raise DecodeError(
            f"{input_name} of {image.width}x{image.height} pixels ({pixels} to decode) "
            f"{REFUSAL_TEXT} = {max_pixels}, the server's decompression-bomb limit: "
            "downscale the image before sending it"
        )
    try:
        image.load()
        rgb = _to_rgb(image)
    except (OSError, ValueError, SyntaxError) as exc:
        raise DecodeError(f"the image is truncated or corrupt ({type(exc).__name__})") from exc
    return _resize(np.asarray(rgb, dtype=np.uint8), height, width)


def _resize(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear with antialiasing on float channels, rounded once.

    The resize rule of the client's and training's pixel pipeline
    (``medserve_client.preprocessing.resize``), repeated here because a model
    repository must not import it; ``tests/unit/test_pixel_parity.py`` checks
    that this decoder gives exactly the pipeline's pixels. Resizing in 8 bits
    instead rounds between the two passes: 1 grey level off on up to a fifth
    of the pixels.
    """
    from PIL import Image

    if rgb.shape[:2] == (height, width):
        return rgb
    planes = []
    for index in range(3):
        plane = Image.fromarray(rgb[:, :, index].astype(np.float32))
        resized = np.asarray(plane.resize((width, height), Image.Resampling.BILINEAR))
        planes.append(np.clip(np.rint(resized), 0, 255).astype(np.uint8))
    return np.stack(planes, axis=2)


def _to_rgb(image: Any) -> Any:
    """Three 8-bit channels: grey becomes RGB, alpha dropped, 16 bits to the high byte."""
    from PIL import Image

    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        # convert("L") would clip 16-bit values at 255; TensorFlow's PNG
        # decoder keeps the high byte (png_set_strip_16).
        high = (np.asarray(image, dtype=np.int64) >> 8).clip(0, 255).astype(np.uint8)
        image = Image.fromarray(high, mode="L")
    return image.convert("RGB")


def _max_pixels(model_config: dict[str, Any]) -> int:
    raw = (model_config.get("parameters") or {}).get(MAX_PIXELS_PARAMETER, {}).get("string_value")
    try:
        value = int(raw)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"config parameter {MAX_PIXELS_PARAMETER!r} must be a positive integer, got {raw!r}"
        ) from exc
    if value < 1:
        raise ValueError(f"config parameter {MAX_PIXELS_PARAMETER!r} must be positive, got {value}")
    return value


class TritonPythonModel:
    """Decodes every image of a request with Pillow; one bad image fails only its request."""

    def initialize(self, args: dict[str, str]) -> None:
        """Read tensor names, the served size and ``max_pixels`` from the config.

        Raises:
            ValueError: The config lacks a BYTES input, a UINT8 ``[H, W, 3]``
                output or a valid ``max_pixels``; Triton reports the message.
        """
        import PIL

        config: dict[str, Any] = json.loads(args["model_config"])
        self.model_name = args.get("model_name", config.get("name", "decoder"))
        inputs = config.get("input", [])
        outputs = config.get("output", [])
        if len(inputs) != 1 or inputs[0].get("data_type") != "TYPE_STRING":
            raise ValueError(f"model {self.model_name}: needs exactly one TYPE_STRING input")
        if len(outputs) != 1 or outputs[0].get("data_type") != "TYPE_UINT8":
            raise ValueError(f"model {self.model_name}: needs exactly one TYPE_UINT8 output")
        dims = [int(d) for d in outputs[0].get("dims", [])]
        if len(dims) != 3 or dims[2] != 3:
            raise ValueError(f"model {self.model_name}: output dims must be [H, W, 3], got {dims}")
        self.input_name = inputs[0]["name"]
        self.output_name = outputs[0]["name"]
        self.height, self.width = dims[0], dims[1]
        self.max_pixels = _max_pixels(config)
        _log(
            "info",
            f"{self.model_name}: Pillow {PIL.__version__} decoder to {self.height}x{self.width}, "
            f"max_pixels={self.max_pixels}",
        )

    def execute(self, requests: list[Any]) -> list[Any]:
        """Decode each request's images; answer errors per request."""
        responses = []
        for index, request in enumerate(requests):
            try:
                images = self._decode_request(request)
            except DecodeError as exc:
                message = f"model {self.model_name} could not decode this request: {exc}"
                _log("error", f"{self.model_name}: request {index} failed: {exc}")
                responses.append(
                    pb_utils.InferenceResponse(output_tensors=[], error=_invalid(message))
                )
                continue
            tensor = pb_utils.Tensor(self.output_name, images)
            responses.append(pb_utils.InferenceResponse(output_tensors=[tensor]))
        return responses

    def _decode_request(self, request: Any) -> np.ndarray:
        tensor = pb_utils.get_input_tensor_by_name(request, self.input_name)
        if tensor is None:
            raise DecodeError(f"missing input {self.input_name!r}")
        items = tensor.as_numpy().reshape(-1)
        decoded = []
        for item in items:
            data = item if isinstance(item, bytes) else bytes(item)
            decoded.append(
                decode(
                    data,
                    height=self.height,
                    width=self.width,
                    max_pixels=self.max_pixels,
                    input_name=self.input_name,
                )
            )
        return np.stack(decoded).astype(np.uint8)

    def finalize(self) -> None:
        """Nothing to release: Pillow holds no state between requests."""


def _log(level: str, message: str) -> None:
    """Write to Triton's server log (through the stub), or Python logging outside Triton."""
    logger = getattr(pb_utils, "Logger", None)
    if logger is not None:
        {"info": logger.log_info, "error": logger.log_error}[level](message)
    else:  # pragma: no cover - outside Triton
        import logging

        getattr(logging.getLogger(__name__), level)(message)


def _invalid(message: str) -> Any:
    """A ``TritonError`` that Triton answers as 400 / INVALID_ARGUMENT.

    Every decode failure is the request's fault (not an image, truncated, over
    the pixel cap), so clients must see "your input", not "the server broke";
    stubs older than error codes get a plain error.
    """
    code = getattr(pb_utils.TritonError, "INVALID_ARG", None)
    if code is None:
        return pb_utils.TritonError(message)
    return pb_utils.TritonError(message, code=code)
