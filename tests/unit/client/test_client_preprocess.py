"""Client-side preprocessing: every input kind and Pillow mode to the served uint8 tensor."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from client_fakes import gray, png_bytes
from PIL import Image

from medserve_client import InvalidInputError
from medserve_client._inputs import prepare_encoded, prepare_tensor
from medserve_client.preprocessing import resize
from medserve_client.preprocessing._raster import decode_image, pil_to_rgb

TARGET = (16, 16)


def _encode(image: Image.Image, fmt: str, **save: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save)
    return buffer.getvalue()


def test_prepare_tensor_gives_uint8_hwc_at_the_target_size_for_a_png_path(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(png_bytes(gray(100, size=40)))
    tensor = prepare_tensor(path, index=0, target_hw=TARGET)
    assert tensor.dtype == np.uint8 and tensor.shape == (16, 16, 3)
    assert np.all(tensor == 100)


def test_prepare_tensor_accepts_str_paths_bytes_pil_and_numpy_with_the_same_result(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(0)
    array = rng.integers(0, 256, size=(32, 24, 3), dtype=np.uint8)
    path = tmp_path / "x.png"
    path.write_bytes(png_bytes(array))
    results = [
        prepare_tensor(value, index=0, target_hw=TARGET)
        for value in (str(path), path, path.read_bytes(), Image.fromarray(array), array)
    ]
    for result in results[1:]:
        np.testing.assert_array_equal(result, results[0])


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("L", (77, 77, 77)),
        ("LA", (77, 77, 77)),
        ("RGBA", (10, 20, 30)),
        ("P", (10, 20, 30)),
        ("I;16", (77, 77, 77)),
        ("I", (77, 77, 77)),
        ("1", (255, 255, 255)),
        ("CMYK", None),
    ],
)
def test_every_pillow_mode_becomes_rgb_deterministically(
    mode: str, expected: tuple[int, int, int] | None
) -> None:
    if mode in ("L", "LA"):
        image = Image.new(mode, (8, 8), 77 if mode == "L" else (77, 200))
    elif mode in ("I;16", "I"):
        # 16-bit intensities: 77 * 257 is 77 in 8 bits.
        image = Image.fromarray(
            np.full((8, 8), 77 * 257, dtype=np.uint16 if mode == "I;16" else np.int32)
        )
    elif mode == "P":
        image = Image.new("RGB", (8, 8), (10, 20, 30)).quantize(colors=4)
    elif mode == "1":
        image = Image.new("1", (8, 8), 1)
    else:
        image = Image.new(mode, (8, 8), (10, 20, 30, 0) if mode in ("RGBA", "CMYK") else 0)
    rgb = pil_to_rgb(image)
    assert rgb.dtype == np.uint8 and rgb.shape == (8, 8, 3)
    if expected is not None:
        assert tuple(rgb[0, 0]) == expected
    np.testing.assert_array_equal(rgb, pil_to_rgb(image))  # Same every time.


def test_float_arrays_in_unit_range_are_scaled_and_rounded() -> None:
    array = np.full((4, 4, 3), 0.5, dtype=np.float32)
    assert prepare_tensor(array, index=0, target_hw=(4, 4))[0, 0, 0] == 128


def test_float_arrays_outside_unit_range_are_refused_with_advice() -> None:
    with pytest.raises(InvalidInputError, match=r"\[0, 1\].*divide by 255"):
        prepare_tensor(np.full((4, 4, 3), 3.0), index=2, target_hw=(4, 4))


@pytest.mark.parametrize("shape", [(4, 4), (4, 4, 1), (4, 4, 4)])
def test_grayscale_and_rgba_arrays_are_accepted(shape: tuple[int, ...]) -> None:
    tensor = prepare_tensor(np.full(shape, 9, dtype=np.uint8), index=0, target_hw=(4, 4))
    assert tensor.shape == (4, 4, 3) and np.all(tensor == 9)


def test_arrays_of_wrong_rank_or_dtype_are_refused_naming_the_input() -> None:
    with pytest.raises(InvalidInputError, match=r"input 3.*HWC"):
        prepare_tensor(np.zeros((2, 4, 4, 3, 1), np.uint8), index=3, target_hw=(4, 4))
    with pytest.raises(InvalidInputError, match="uint8 or float"):
        prepare_tensor(np.zeros((4, 4, 3), np.int16), index=0, target_hw=(4, 4))


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    # A 20x10 image whose left half is white; orientation 6 (rotate 90 CW to view).
    array = np.zeros((10, 20, 3), dtype=np.uint8)
    array[:, :10] = 255
    image = Image.fromarray(array)
    exif = image.getexif()
    exif[0x0112] = 6
    data = _encode(image, "JPEG", exif=exif.tobytes(), quality=95)
    upright = decode_image(data, what="x")
    assert upright.size == (10, 20)  # Rotated: now 10 wide, 20 high.
    top = np.asarray(upright.convert("L"))[:5].mean()
    bottom = np.asarray(upright.convert("L"))[-5:].mean()
    assert top > 200 and bottom < 50


def test_large_jpegs_are_decoded_at_full_scale() -> None:
    data = _encode(Image.new("RGB", (800, 600), (90, 90, 90)), "JPEG", quality=90)
    assert decode_image(data, what="x").size == (800, 600)


def test_a_pil_image_keeps_its_exif_rotation_applied() -> None:
    image = Image.new("RGB", (20, 10), (200, 10, 10))
    exif = image.getexif()
    exif[0x0112] = 6
    reopened = Image.open(io.BytesIO(_encode(image, "JPEG", exif=exif.tobytes())))
    assert pil_to_rgb(reopened).shape == (20, 10, 3)


def test_decompression_bombs_are_refused_before_decoding() -> None:
    data = png_bytes(np.zeros((100, 100), dtype=np.uint8))
    with pytest.raises(InvalidInputError, match="decompression bomb"):
        decode_image(data, what="bomb.png", max_pixels=5_000)
    with pytest.raises(InvalidInputError, match="decompression bomb"):
        prepare_encoded(data, index=0, max_pixels=5_000)


def test_truncated_images_raise_invalid_input_not_a_pillow_traceback() -> None:
    data = _encode(Image.new("RGB", (64, 64), (1, 2, 3)), "JPEG")[:200]
    with pytest.raises(InvalidInputError, match="damaged or truncated"):
        prepare_tensor(data, index=0, target_hw=TARGET)


def test_non_images_and_missing_files_are_named_in_the_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match=r"input 1 .*not an image"):
        prepare_tensor(b"hello", index=1, target_hw=TARGET)
    with pytest.raises(InvalidInputError, match=r"nope\.png: no such file"):
        prepare_tensor(tmp_path / "nope.png", index=0, target_hw=TARGET)
    with pytest.raises(InvalidInputError, match="unsupported input type int"):
        prepare_tensor(42, index=0, target_hw=TARGET)


def test_resize_of_a_flat_image_keeps_its_value_and_identity_resize_is_a_no_op() -> None:
    flat = gray(123, size=50)
    assert np.all(resize(flat, (7, 9)) == 123)
    noisy = np.random.default_rng(1).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    assert resize(noisy, (16, 16)) is noisy


def test_encoded_png_and_plain_jpeg_files_are_sent_as_they_are(tmp_path: Path) -> None:
    png = png_bytes(gray(5, size=20))
    assert prepare_encoded(png, index=0) == png
    jpeg = _encode(Image.new("RGB", (20, 20), (1, 2, 3)), "JPEG")
    path = tmp_path / "a.jpg"
    path.write_bytes(jpeg)
    assert prepare_encoded(path, index=0) == jpeg


def test_encoded_path_sends_16_bit_pngs_as_they_are_and_renders_arrays() -> None:
    # TensorFlow keeps the high byte of a 16-bit PNG, as the pipeline does.
    sixteen_bit = png_bytes(np.full((8, 8), 77 * 257, dtype=np.uint16))
    assert prepare_encoded(sixteen_bit, index=0) == sixteen_bit
    array_png = prepare_encoded(gray(40, size=8), index=0)
    assert Image.open(io.BytesIO(array_png)).getpixel((3, 3)) == (40, 40, 40)


def test_sixteen_bit_greyscale_keeps_the_high_byte() -> None:
    values = np.array([[0, 255, 256, 511, 32768, 65535]], dtype=np.uint16)
    rgb = pil_to_rgb(Image.fromarray(values))
    assert rgb[0, :, 0].tolist() == [0, 0, 1, 1, 128, 255]


def test_encoded_path_reencodes_a_jpeg_with_an_exif_rotation_upright() -> None:
    image = Image.new("RGB", (20, 10), (200, 10, 10))
    exif = image.getexif()
    exif[0x0112] = 6
    jpeg = _encode(image, "JPEG", exif=exif.tobytes())
    out = prepare_encoded(jpeg, index=0)
    assert out.startswith(b"\x89PNG")  # TensorFlow ignores EXIF, so the client rotates.
    assert Image.open(io.BytesIO(out)).size == (10, 20)


def test_palette_pngs_go_to_the_encoded_entry_point_unchanged() -> None:
    palette = _encode(Image.new("RGB", (8, 8), (1, 2, 3)).quantize(colors=2), "PNG")
    assert prepare_encoded(palette, index=0) == palette
