"""Refuse decompression bombs inside the decoder graph, before anything is decoded.

Usage (inside a traced function, e.g. the decoder's ``serving_default``)::

    checked = guard_encoded_image(encoded, max_pixels=spec.max_pixels)
    image = tf.io.decode_image(checked, channels=3, expand_animations=False)

A PNG of a few hundred KB can inflate to hundreds of MB, and TensorFlow's
decoders refuse only images above 2^31 bytes. :func:`guard_encoded_image`
reads the image's size from its header with plain byte arithmetic (nothing is
decompressed) and fails the request with ``InvalidArgumentError`` naming the
limit when the image would decode to more than ``max_pixels`` pixels:

- PNG: width and height in the IHDR chunk (big-endian, bytes 16-24);
- JPEG: the SOF marker, read by ``tf.io.extract_jpeg_shape`` (header only);
- BMP: width and height in the BITMAPINFOHEADER (little-endian, bytes 18-26;
  a negative height means top-down rows);
- GIF: TensorFlow's GIF decoder (giflib's ``DGifSlurp``) holds the raster of
  *every* frame, sized by each frame's own image descriptor, and allocates
  its output by the largest frame; so the guard walks the GIF block structure
  and counts the larger of the sum of all frame areas and the largest frame.

Anything else (WebP, which TensorFlow 2.21 decodes but the production image's
TensorFlow 2.17 does not, TIFF, text) is refused as "not a PNG, JPEG, GIF or
BMP file": the client sends only PNG and JPEG as they are and re-encodes
everything else as PNG, so nothing legitimate needs another format.

The limit is a Python int baked into the graph when it is exported: Triton's
TensorFlow backend cannot pass config parameters into a SavedModel signature.
The exporter records the same value as the ``max_pixels`` parameter of the
decoder's config, and ``medserve verify`` checks that the graph refuses one
pixel more than that parameter.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

#: Message fragment of a refusal; the client and the tests look for it.
REFUSAL_TEXT = "exceeds max_pixels"
#: Message fragment of an unknown format.
FORMAT_TEXT = "is not a PNG, JPEG, GIF or BMP file"

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
_GIF_MAGICS = (b"GIF87a", b"GIF89a")
_BMP_MAGIC = b"BM"
# Zero bytes appended before reading fixed offsets, so a truncated header
# reads as a 0x0 image (which the decoder then rejects) instead of failing
# the slice with an out-of-range error.
_PAD = 32
# GIF block introducers.
_GIF_EXTENSION = 0x21
_GIF_IMAGE = 0x2C
_GIF_TRAILER = 0x3B


def guard_encoded_image(encoded: Any, *, max_pixels: int, input_name: str = "image_bytes") -> Any:
    """Return ``encoded`` once its header says it decodes to at most ``max_pixels`` pixels.

    Args:
        encoded: A scalar ``tf.string`` tensor holding one encoded image.
        max_pixels: Largest number of pixels (width x height, summed over
            the frames of a GIF) that may be decoded.
        input_name: The input's name, used in error messages.

    Returns:
        ``encoded`` itself, with the checks as control dependencies, so the
        decoder that consumes it runs only after they passed.
    """
    import tensorflow as tf

    raw = tf.io.decode_raw(encoded, tf.uint8)
    padded = tf.concat([tf.cast(raw, tf.int64), tf.zeros([_PAD], tf.int64)], axis=0)
    is_png = _starts_with(padded, _PNG_MAGIC)
    is_jpeg = _starts_with(padded, _JPEG_MAGIC)
    is_gif = tf.logical_or(*(_starts_with(padded, magic) for magic in _GIF_MAGICS))
    is_bmp = _starts_with(padded, _BMP_MAGIC)
    known = tf.reduce_any(tf.stack([is_png, is_jpeg, is_gif, is_bmp]))
    format_ok = tf.debugging.Assert(
        known,
        [f"{input_name} {FORMAT_TEXT}: send one of those (the client converts other formats)"],
    )
    with tf.control_dependencies([format_ok]):
        width, height, pixels = tf.case(
            [
                (is_png, lambda: _png_size(padded)),
                (is_jpeg, lambda: _jpeg_size(encoded)),
                (is_bmp, lambda: _bmp_size(padded)),
            ],
            default=lambda: _gif_size(padded, tf.size(raw, out_type=tf.int64)),
            exclusive=False,
        )
    message = tf.strings.format(
        f"{input_name} of {{}}x{{}} pixels ({{}} to decode) {REFUSAL_TEXT} = {max_pixels}, "
        "the server's decompression-bomb limit: downscale the image before sending it",
        [width, height, pixels],
    )
    within = tf.debugging.Assert(tf.less_equal(pixels, max_pixels), [message])
    with tf.control_dependencies([format_ok, within]):
        return tf.identity(encoded)


def png_header(width: int, height: int) -> bytes:
    """The signature and IHDR chunk of an 8-bit RGB PNG: enough for the guard, not for a decoder.

    ``medserve verify`` sends one a pixel above the cap to check the cap the
    graph holds, without ever decoding anything.
    """
    body = b"IHDR" + struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    crc = struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)
    return _PNG_MAGIC + struct.pack(">I", len(body) - 4) + body + crc


def _starts_with(padded: Any, magic: bytes) -> Any:
    import tensorflow as tf

    expected = tf.constant(list(magic), dtype=tf.int64)
    return tf.reduce_all(tf.equal(padded[: len(magic)], expected))


def _uint(padded: Any, offset: Any, size: int, *, big_endian: bool) -> Any:
    """Unsigned integer of ``size`` bytes at ``offset`` (an int or an int64 tensor)."""
    import tensorflow as tf

    start = tf.cast(offset, tf.int64)
    last = tf.size(padded, out_type=tf.int64) - 1
    value = tf.constant(0, tf.int64)
    for i in range(size):
        byte = tf.gather(padded, tf.minimum(start + i, last))
        value += byte * (256 ** (size - 1 - i) if big_endian else 256**i)
    return value


def _png_size(padded: Any) -> tuple[Any, Any, Any]:
    width = _uint(padded, 16, 4, big_endian=True)
    height = _uint(padded, 20, 4, big_endian=True)
    return width, height, width * height


def _jpeg_size(encoded: Any) -> tuple[Any, Any, Any]:
    import tensorflow as tf

    # Reads the markers up to the SOF with libjpeg; no scan is decoded.
    shape = tf.io.extract_jpeg_shape(encoded, output_type=tf.int64)
    return shape[1], shape[0], shape[0] * shape[1]


def _bmp_size(padded: Any) -> tuple[Any, Any, Any]:
    import tensorflow as tf

    def signed(value: Any) -> Any:
        return tf.where(value >= 2**31, value - 2**32, value)

    width = tf.abs(signed(_uint(padded, 18, 4, big_endian=False)))
    height = tf.abs(signed(_uint(padded, 22, 4, big_endian=False)))
    return width, height, width * height


def _gif_size(padded: Any, length: Any) -> tuple[Any, Any, Any]:
    """Walk the GIF blocks: (largest frame width, height, pixels giflib and TF hold)."""
    import tensorflow as tf

    def u16(offset: Any) -> Any:
        return _uint(padded, offset, 2, big_endian=False)

    def byte(offset: Any) -> Any:
        return _uint(padded, offset, 1, big_endian=False)

    def colour_table(flags: Any) -> Any:
        # Bit 7: a colour table follows; bits 0-2: it holds 2^(n+1) RGB entries.
        present = tf.bitwise.bitwise_and(flags, tf.constant(0x80, tf.int64)) > 0
        size = 3 * tf.bitwise.left_shift(
            tf.constant(2, tf.int64), tf.bitwise.bitwise_and(flags, tf.constant(7, tf.int64))
        )
        return tf.where(present, size, tf.constant(0, tf.int64))

    start = 13 + colour_table(byte(10))
    zero = tf.constant(0, tf.int64)

    def keep_going(pos: Any, in_data: Any, done: Any, *_: Any) -> Any:
        return tf.logical_and(tf.logical_not(done), pos < length)

    def step(
        pos: Any, in_data: Any, done: Any, area: Any, max_w: Any, max_h: Any
    ) -> tuple[Any, ...]:
        # One block per iteration: a data sub-block (length byte + data, a zero
        # length ends the run), an extension, an image descriptor, or the end.
        code = byte(pos)
        is_image = tf.logical_and(tf.logical_not(in_data), tf.equal(code, _GIF_IMAGE))
        is_extension = tf.logical_and(tf.logical_not(in_data), tf.equal(code, _GIF_EXTENSION))
        frame_w = tf.where(is_image, u16(pos + 5), zero)
        frame_h = tf.where(is_image, u16(pos + 7), zero)
        # Descriptor (10 bytes) + local colour table + LZW minimum code size.
        image_next = pos + 11 + colour_table(byte(pos + 9))
        next_pos = tf.where(
            in_data,
            pos + 1 + code,
            tf.where(is_image, image_next, tf.where(is_extension, pos + 2, pos)),
        )
        next_in_data = tf.where(in_data, code > 0, tf.logical_or(is_image, is_extension))
        # The trailer, or anything unexpected, ends the walk (the decoder
        # then reports a malformed file itself).
        next_done = tf.logical_not(tf.logical_or(in_data, tf.logical_or(is_image, is_extension)))
        return (
            next_pos,
            next_in_data,
            next_done,
            area + frame_w * frame_h,
            tf.maximum(max_w, frame_w),
            tf.maximum(max_h, frame_h),
        )

    _, _, _, area, max_w, max_h = tf.while_loop(
        keep_going,
        step,
        (start, tf.constant(False), tf.constant(False), zero, zero, zero),
    )
    return max_w, max_h, tf.maximum(area, max_w * max_h)
