"""Specs of the Pillow decoder of the ONNX configs: same output as the TF decoder, pixel cap first.

The documented bound (``medserve.verify_onnx.PILLOW_TF_MAX_DIFF`` and the
decoder's docstring): against the TensorFlow SavedModel decoder, a lossless
file (PNG, BMP, GIF, 16-bit PNG, RGBA) differs by at most 1 grey level per
pixel after resizing (rounding), a JPEG by at most PILLOW_TF_MAX_DIFF (the
two libraries' IDCTs differ too), and the mean difference stays below 1.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tiny_export import TINY_SIZE, ExportedRepo

from medserve.loaders import run_eager
from medserve.triton_backend.decode_pillow import DecodeError, decode
from medserve.verify_onnx import PILLOW_TF_MAX_DIFF

pytestmark = pytest.mark.slow

HEIGHT, WIDTH = TINY_SIZE
CAP = 10**8


def _encode(array: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


def _samples() -> dict[str, bytes]:
    rng = np.random.default_rng(11)
    y, x = np.mgrid[0:90, 0:130]
    smooth = np.stack([x * 255 // 130, y * 255 // 90, (x + y) * 255 // 220], -1).astype(np.uint8)
    noise = rng.integers(0, 256, (77, 51, 3), dtype=np.uint8)
    grey = rng.integers(0, 256, (64, 40), dtype=np.uint8)
    return {
        "png-smooth": _encode(smooth, "PNG"),
        "png-noise": _encode(noise, "PNG"),
        "png-grey": _encode(grey, "PNG"),
        "png-rgba": _encode(rng.integers(0, 256, (50, 70, 4), dtype=np.uint8), "PNG"),
        "png-16bit": _encode(rng.integers(0, 65536, (40, 60)).astype(np.uint16), "PNG"),
        "bmp": _encode(noise, "BMP"),
        "gif": _encode(grey, "GIF"),
        "jpeg-smooth": _encode(smooth, "JPEG"),
        "jpeg-noise": _encode(noise, "JPEG"),
    }


def _tf_decode(exported_repo: ExportedRepo, data: bytes) -> np.ndarray:
    path = exported_repo.repo / "medcnn_preprocess" / "1" / "model.savedmodel"
    return run_eager(path, {"image_bytes": np.array([[data]], dtype=object)})["image"][0]


@pytest.mark.parametrize("name", sorted(_samples()))
def test_pillow_decoder_matches_the_tensorflow_decoder_within_the_documented_bound(
    exported_repo: ExportedRepo, name: str
) -> None:
    data = _samples()[name]
    pillow = decode(data, height=HEIGHT, width=WIDTH, max_pixels=CAP).astype(int)
    served = _tf_decode(exported_repo, data).astype(int)
    assert pillow.shape == served.shape == (HEIGHT, WIDTH, 3)
    diff = np.abs(pillow - served)
    bound = PILLOW_TF_MAX_DIFF if name.startswith("jpeg") else 1
    assert diff.max() <= bound
    assert diff.mean() < 1.0


def test_pillow_decoder_decodes_an_image_of_the_served_size_exactly() -> None:
    image = np.random.default_rng(3).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    decoded = decode(_encode(image, "PNG"), height=HEIGHT, width=WIDTH, max_pixels=CAP)
    assert decoded.dtype == np.uint8
    np.testing.assert_array_equal(decoded, image)


def test_pillow_decoder_accepts_exactly_max_pixels_and_refuses_one_more() -> None:
    data = _encode(np.zeros((20, 30, 3), np.uint8), "PNG")
    assert decode(data, height=HEIGHT, width=WIDTH, max_pixels=600).shape == (HEIGHT, WIDTH, 3)
    refusal = r"30x20 pixels \(600 to decode\) exceeds max_pixels = 599"
    with pytest.raises(DecodeError, match=refusal):
        decode(data, height=HEIGHT, width=WIDTH, max_pixels=599)


def test_pillow_decoder_says_what_the_tensorflow_decoder_says_when_it_refuses() -> None:
    from medserve import decode_guard
    from medserve.triton_backend import decode_pillow

    assert decode_pillow.REFUSAL_TEXT == decode_guard.REFUSAL_TEXT
    assert decode_pillow.FORMAT_TEXT == decode_guard.FORMAT_TEXT


def test_pillow_decoder_refuses_formats_the_tensorflow_decoder_refuses() -> None:
    image = np.zeros((8, 8, 3), np.uint8)
    for fmt in ("TIFF", "WEBP"):
        with pytest.raises(DecodeError, match="is not a PNG, JPEG, GIF or BMP file"):
            decode(_encode(image, fmt), height=HEIGHT, width=WIDTH, max_pixels=CAP)


def _png_header_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares ``width`` x ``height`` (its data would never fit)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 16)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def test_pillow_decoder_refuses_a_decompression_bomb_from_its_header_before_decoding() -> None:
    bomb = _png_header_claiming(60_000, 50_000)  # 3e9 pixels, 9 GB decoded, 100 bytes sent.
    with pytest.raises(DecodeError, match=r"60000x50000 pixels .* exceeds max_pixels = 50000000"):
        decode(bomb, height=HEIGHT, width=WIDTH, max_pixels=50_000_000)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"not an image at all", "image_bytes is not a PNG, JPEG, GIF or BMP file"),
        (_png_header_claiming(40, 40), "truncated or corrupt"),
    ],
)
def test_pillow_decoder_names_bad_bytes_without_a_traceback(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        decode(data, height=HEIGHT, width=WIDTH, max_pixels=CAP)


def test_the_decoder_file_is_self_contained() -> None:
    source = Path(decode.__code__.co_filename).read_text()
    lines = [line.lstrip() for line in source.splitlines()]
    imports = [line for line in lines if line.startswith(("import ", "from "))]
    assert not [line for line in imports if "medserve" in line]
