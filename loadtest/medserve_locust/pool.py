"""The images a load test sends: loaded once per process, cycled through.

Usage::

    pool = ImagePool.load(folder="", image_size=(224, 224), count=32)
    tensor = pool.pixels(start=7, batch_size=4)      # uint8 [4, 224, 224, 3]
    blobs = pool.encoded(start=7, batch_size=4)      # object [4, 1] of JPEG/PNG bytes

A folder given by the user is decoded, converted to RGB and resized once by
the client's pixel pipeline (``medserve_client.preprocessing``); its files'
original bytes are what the encoded mode sends, so the server decodes what a
real caller would upload.
Without a folder the pool is generated: ``medserve.data.generate_synthetic``
where the medserve package is installed, else a small self-contained
generator (a load-test pod has locust and tritonclient, not medserve).
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_CACHE: dict[tuple[str, tuple[int, int], int], ImagePool] = {}


def _jpeg_bytes(pixels: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="RGB").save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _generated_pixels(count: int, image_size: tuple[int, int], seed: int) -> np.ndarray:
    """``count`` uint8 RGB images that look like smooth scans, not white noise.

    Noise would make JPEG payloads unrealistically large; a blurred blob on a
    gradient with mild grain compresses like a real radiograph.
    """
    try:
        from medserve.data import generate_synthetic
    except ImportError:  # A load-test pod has no medserve: the generator below.
        return _local_pixels(count, image_size, seed)
    per_class = max(1, -(-count // 2))
    images = generate_synthetic(per_class, image_size, seed)[0]
    return np.ascontiguousarray(images[:count], dtype=np.uint8)


def _local_pixels(count: int, image_size: tuple[int, int], seed: int) -> np.ndarray:
    """A blurred blob on a gradient with mild grain, greyscale as RGB."""
    rng = np.random.default_rng(seed)
    height, width = image_size
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    out = np.empty((count, height, width, 3), dtype=np.uint8)
    for index in range(count):
        cy, cx = rng.uniform(0.25, 0.75, 2) * (height, width)
        radius = rng.uniform(0.08, 0.3) * min(height, width)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius**2))
        base = 60 + 80 * (yy / height) + 100 * blob + rng.normal(0, 6, (height, width))
        grey = np.clip(base, 0, 255).astype(np.uint8)
        out[index] = grey[..., None]
    return out


@dataclass(frozen=True)
class ImagePool:
    """Decoded pixels and encoded bytes of the same images.

    Attributes:
        pixels_all: uint8 ``[n, H, W, 3]`` at the model's input size.
        encoded_all: One encoded image (PNG or JPEG bytes) per pixel image.
        source: Where the images came from, for logs and summaries.
    """

    pixels_all: np.ndarray
    encoded_all: tuple[bytes, ...]
    source: str

    def __len__(self) -> int:
        return len(self.encoded_all)

    @classmethod
    def load(
        cls, *, folder: str, image_size: tuple[int, int], count: int = 32, seed: int = 0
    ) -> ImagePool:
        """Return the process-wide pool for these arguments, building it once."""
        key = (folder, image_size, count)
        if key not in _CACHE:
            if folder:
                _CACHE[key] = cls.from_folder(Path(folder), image_size)
            else:
                _CACHE[key] = cls.generated(count, image_size, seed)
            log.info("image pool: %d images from %s", len(_CACHE[key]), _CACHE[key].source)
        return _CACHE[key]

    @classmethod
    def from_folder(cls, folder: Path, image_size: tuple[int, int]) -> ImagePool:
        """Load every PNG/JPEG under ``folder`` (recursively), sorted by path."""
        from medserve_client.preprocessing import to_model_input

        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f"no PNG or JPEG images under {folder}")
        height, width = image_size
        pixels = np.empty((len(files), height, width, 3), dtype=np.uint8)
        encoded = []
        for index, path in enumerate(files):
            data = path.read_bytes()
            pixels[index] = to_model_input(data, image_size, what=str(path))
            encoded.append(data)
        return cls(pixels, tuple(encoded), str(folder))

    @classmethod
    def generated(cls, count: int, image_size: tuple[int, int], seed: int = 0) -> ImagePool:
        """Generate ``count`` images and their JPEG encodings."""
        pixels = _generated_pixels(count, image_size, seed)
        return cls(pixels, tuple(_jpeg_bytes(p) for p in pixels), f"generated (seed {seed})")

    def _indices(self, start: int, batch_size: int) -> np.ndarray:
        return (start + np.arange(batch_size)) % len(self)

    def pixels(self, start: int, batch_size: int) -> np.ndarray:
        """uint8 ``[batch_size, H, W, 3]``, wrapping around the pool."""
        return np.ascontiguousarray(self.pixels_all[self._indices(start, batch_size)])

    def encoded(self, start: int, batch_size: int) -> np.ndarray:
        """object ``[batch_size, 1]`` of encoded bytes, the ensemble's input layout."""
        blobs = np.empty((batch_size, 1), dtype=np.object_)
        for row, index in enumerate(self._indices(start, batch_size)):
            blobs[row, 0] = self.encoded_all[index]
        return blobs

    def batch(self, start: int, batch_size: int, *, encoded: bool) -> np.ndarray:
        """:meth:`encoded` for the ensemble's bytes input, else :meth:`pixels`."""
        if encoded:
            return self.encoded(start, batch_size)
        return self.pixels(start, batch_size)
