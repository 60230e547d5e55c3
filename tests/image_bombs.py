"""Decompression bombs and headers of every size, built in memory for the tests.

Usage::

    data = png_bomb(10_000, 10_000)      # ~300 KB of PNG, 300 MB once decoded
    gif = gif_frames(64, 64, frames=3)   # a real 3-frame GIF (Pillow)

A bomb is a valid image of one colour: zlib shrinks its rows about 1000:1, so
the file is small and the decoded image is not. Rows are compressed in chunks,
so building a 300 MB image never holds it in memory.
"""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def png_bomb(width: int, height: int, *, colour_type: int = 2) -> bytes:
    """A valid all-black 8-bit PNG (RGB by default) of ``width`` x ``height``."""
    channels = {0: 1, 2: 3}[colour_type]
    compressor = zlib.compressobj(9)
    row = b"\x00" * (1 + width * channels)  # filter byte "none" + the pixels
    parts = []
    rows_per_chunk = max(1, (1 << 22) // len(row))
    done = 0
    while done < height:
        count = min(rows_per_chunk, height - done)
        parts.append(compressor.compress(row * count))
        done += count
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return (
        _PNG_MAGIC
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", b"".join(parts))
        + _chunk(b"IEND", b"")
    )


def bmp_header(width: int, height: int) -> bytes:
    """The first 54 bytes of a 24-bit BMP of that size (no pixel data)."""
    row = (width * 3 + 3) // 4 * 4
    size = 54 + row * abs(height)
    return (
        b"BM"
        + struct.pack("<IHHI", size & 0xFFFFFFFF, 0, 0, 54)
        + struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    )


def gif_frames(width: int, height: int, *, frames: int) -> bytes:
    """A real animated GIF of ``frames`` frames (Pillow writes it)."""
    images = [Image.new("RGB", (width, height), (40 * i % 256, 0, 0)) for i in range(frames)]
    out = io.BytesIO()
    images[0].save(out, format="GIF", save_all=True, append_images=images[1:])
    return out.getvalue()


def gif_with_frame_descriptor(frame_width: int, frame_height: int) -> bytes:
    """A 1x1-screen GIF whose only frame's descriptor claims ``frame_width`` x ``frame_height``.

    giflib sizes a frame's raster by its descriptor, not by the screen, so the
    screen size alone says nothing about the memory a GIF costs.
    """
    screen = b"GIF89a" + struct.pack("<HHBBB", 1, 1, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    descriptor = b"\x2c" + struct.pack("<HHHHB", 0, 0, frame_width, frame_height, 0)
    data = b"\x02" + b"\x02\x4c\x01\x00"  # LZW min code size, one tiny sub-block, terminator
    return screen + descriptor + data + b"\x3b"
