"""The synthetic dataset: seeded, deterministic, and the lesion class is visibly different."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medserve.data import generate_synthetic, load_image_folder, write_synthetic_folder
from medserve.errors import UsageError


def test_same_seed_gives_identical_arrays_and_another_seed_different_ones() -> None:
    first = generate_synthetic(4, (32, 32), seed=7)
    again = generate_synthetic(4, (32, 32), seed=7)
    other = generate_synthetic(4, (32, 32), seed=8)
    assert np.array_equal(first[0], again[0])
    assert np.array_equal(first[1], again[1])
    assert not np.array_equal(first[0], other[0])


def test_shapes_labels_and_names() -> None:
    images, labels, names = generate_synthetic(3, (40, 32), seed=0)
    assert names == ("normal", "lesion")
    assert images.shape == (6, 40, 32, 3) and images.dtype == np.uint8
    assert labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert np.array_equal(images[..., 0], images[..., 2])  # grey replicated to RGB


def test_first_images_do_not_depend_on_the_count() -> None:
    few, _, _ = generate_synthetic(2, (32, 32), seed=3)
    many, _, _ = generate_synthetic(5, (32, 32), seed=3)
    assert np.array_equal(few[:2], many[:2])  # normal 0 and 1
    assert np.array_equal(few[2:4], many[5:7])  # lesion 0 and 1


def test_lesion_images_have_a_brighter_maximum_on_average() -> None:
    images, labels, _ = generate_synthetic(30, (64, 64), seed=0)
    peaks = images[..., 0].reshape(len(images), -1).max(axis=1).astype(float)
    normal, lesion = peaks[labels == 0].mean(), peaks[labels == 1].mean()
    assert lesion > normal + 20
    # Same background and body: the mean brightness differs far less than the peak.
    means = images[..., 0].reshape(len(images), -1).mean(axis=1)
    assert abs(means[labels == 1].mean() - means[labels == 0].mean()) < 5


def test_write_synthetic_folder_writes_real_png_jpeg_and_dicom_files(tmp_path: Path) -> None:
    paths = write_synthetic_folder(tmp_path, 3, (32, 32), seed=0, formats=("png", "jpeg", "dcm"))
    assert len(paths) == 6
    assert sorted(p.parent.name for p in paths) == ["lesion"] * 3 + ["normal"] * 3
    with Image.open(tmp_path / "normal" / "normal_00000.png") as png:
        assert png.format == "PNG" and png.size == (32, 32)
    with Image.open(tmp_path / "lesion" / "lesion_00001.jpg") as jpeg:
        assert jpeg.format == "JPEG"
    data = load_image_folder(tmp_path, (32, 32))
    assert data.skipped_files == ()
    expected, _, _ = generate_synthetic(3, (32, 32), seed=0)
    # PNG and DICOM are lossless: the pixels come back exactly.
    assert np.array_equal(data.images[data.keys.index("normal/normal_00000.png")], expected[0])
    assert np.array_equal(data.images[data.keys.index("lesion/lesion_00002.dcm")], expected[5])


def test_bad_synthetic_parameters_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="at least 1"):
        generate_synthetic(0, (32, 32), seed=0)
    with pytest.raises(UsageError, match="too small"):
        generate_synthetic(2, (8, 8), seed=0)
    with pytest.raises(UsageError, match="formats"):
        write_synthetic_folder(tmp_path, 1, (32, 32), seed=0, formats=("gif",))
