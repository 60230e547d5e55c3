"""The decoder's pixel cap: sizes read from headers, bombs refused before decoding."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from image_bombs import bmp_header, gif_frames, gif_with_frame_descriptor, png_bomb
from PIL import Image
from tiny_export import ExportedRepo

from medserve.decode_guard import FORMAT_TEXT, REFUSAL_TEXT, png_header
from medserve.errors import VerificationError
from medserve.loaders import run_eager, run_session


def _encode(fmt: str, size: tuple[int, int] = (40, 30), mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, 7).save(out, format=fmt)
    return out.getvalue()


@pytest.fixture(scope="module")
def guarded_shape() -> Callable[[bytes, int], tuple[int, ...]]:
    """Run the guard then TensorFlow's decoder on one file; returns the decoded shape."""
    import tensorflow as tf

    from medserve.decode_guard import guard_encoded_image

    functions: dict[int, Callable[..., tf.Tensor]] = {}

    def run(data: bytes, max_pixels: int) -> tuple[int, ...]:
        if max_pixels not in functions:

            @tf.function(input_signature=[tf.TensorSpec([], tf.string)])
            def decode(encoded: tf.Tensor) -> tf.Tensor:
                checked = guard_encoded_image(encoded, max_pixels=max_pixels)
                return tf.shape(tf.io.decode_image(checked, channels=3, expand_animations=False))

            functions[max_pixels] = decode
        return tuple(int(v) for v in functions[max_pixels](tf.constant(data)).numpy())

    return run


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP", "GIF"])
def test_guard_reads_the_size_from_the_header_of_each_format(
    guarded_shape: Callable[[bytes, int], tuple[int, ...]], fmt: str
) -> None:
    import tensorflow as tf

    data = _encode(fmt, (40, 30))
    assert guarded_shape(data, 40 * 30) == (30, 40, 3)
    with pytest.raises(
        tf.errors.InvalidArgumentError, match=f"40x30 pixels.*{REFUSAL_TEXT} = 1199"
    ):
        guarded_shape(data, 40 * 30 - 1)


def test_guard_reads_a_greyscale_png_and_a_top_down_bmp_header(
    guarded_shape: Callable[[bytes, int], tuple[int, ...]],
) -> None:
    import tensorflow as tf

    assert guarded_shape(_encode("PNG", (20, 10), "L"), 200) == (10, 20, 3)
    with pytest.raises(tf.errors.InvalidArgumentError, match="9000x9000 pixels"):
        guarded_shape(bmp_header(9000, -9000), 50_000_000)


def test_guard_counts_every_frame_of_a_gif(
    guarded_shape: Callable[[bytes, int], tuple[int, ...]],
) -> None:
    import tensorflow as tf

    animated = gif_frames(64, 64, frames=3)
    assert guarded_shape(animated, 3 * 64 * 64) == (64, 64, 3)
    with pytest.raises(tf.errors.InvalidArgumentError, match=f"{3 * 64 * 64} to decode"):
        guarded_shape(animated, 3 * 64 * 64 - 1)


def test_guard_refuses_a_gif_frame_larger_than_its_screen(
    guarded_shape: Callable[[bytes, int], tuple[int, ...]],
) -> None:
    import tensorflow as tf

    with pytest.raises(tf.errors.InvalidArgumentError, match="65535x65535 pixels"):
        guarded_shape(gif_with_frame_descriptor(65535, 65535), 50_000_000)


@pytest.mark.parametrize(
    "data", [_encode("WEBP"), b"not an image", b""], ids=["webp", "text", "empty"]
)
def test_guard_refuses_formats_other_than_png_jpeg_gif_bmp(
    guarded_shape: Callable[[bytes, int], tuple[int, ...]], data: bytes
) -> None:
    import tensorflow as tf

    with pytest.raises(tf.errors.InvalidArgumentError, match=FORMAT_TEXT):
        guarded_shape(data, 50_000_000)


def test_exported_decoder_refuses_a_png_bomb_in_both_loaders_naming_the_limit(
    exported_repo: ExportedRepo,
) -> None:
    path = exported_repo.repo / "medcnn_preprocess" / "1" / "model.savedmodel"
    bomb = png_bomb(10_000, 10_000)
    assert len(bomb) < 1_000_000  # a few hundred KB that would decode to 300 MB
    limit = exported_repo.spec.max_pixels
    for run in (run_eager, run_session):
        with pytest.raises(
            VerificationError, match=f"10000x10000 pixels.*{REFUSAL_TEXT} = {limit}"
        ):
            run(path, {"image_bytes": np.array([[bomb]], dtype=object)})


def test_verify_catches_a_decoder_config_whose_max_pixels_differs_from_the_graph(
    repo_copy: Path,
) -> None:
    from medserve.verify import verify_repository

    config = repo_copy / "medcnn_preprocess" / "configs" / "local.pbtxt"
    text = config.read_text()
    assert 'string_value: "50000000"' in text
    config.write_text(text.replace('string_value: "50000000"', 'string_value: "1000"'))
    with pytest.raises(VerificationError, match=r"max_pixels.*'1000'.*export the model again"):
        verify_repository(repo_copy)


def test_png_header_is_what_the_guard_reads_as_the_size() -> None:
    header = png_header(123, 45)
    assert header[16:24] == (123).to_bytes(4, "big") + (45).to_bytes(4, "big")
    assert header.startswith(b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR")
