"""Image-folder datasets: class discovery, skipped files, clear errors."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medserve.data import list_image_folder, load_image_folder, write_synthetic_folder
from medserve.errors import UsageError


def _png(path: Path, value: int, size: tuple[int, int] = (20, 12)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0]), value, dtype=np.uint8)).save(path)
    return path


def test_classes_are_the_sorted_subfolder_names(tmp_path: Path) -> None:
    for name in ("zebra", "alpha", "mid"):
        _png(tmp_path / name / "a.png", 10)
        _png(tmp_path / name / "b.png", 20)
    listing = list_image_folder(tmp_path)
    assert listing.label_names == ("alpha", "mid", "zebra")
    data = load_image_folder(tmp_path, (16, 16))
    assert data.label_names == ("alpha", "mid", "zebra")
    assert data.class_counts() == {"alpha": 2, "mid": 2, "zebra": 2}
    assert [data.label_names[i] for i in data.labels] == [k.split("/")[0] for k in data.keys]


def test_images_are_rgb_uint8_of_the_requested_size(tmp_path: Path) -> None:
    write_synthetic_folder(tmp_path, 2, (40, 48), seed=0, formats=("png", "jpeg"))
    data = load_image_folder(tmp_path, (24, 20))
    assert data.images.shape == (4, 24, 20, 3)
    assert data.images.dtype == np.uint8
    assert {Path(k).suffix for k in data.keys} == {".png", ".jpg"}


def test_hidden_and_non_image_files_are_ignored_not_skipped(tmp_path: Path) -> None:
    for name in ("a", "b"):
        _png(tmp_path / name / "x.png", 1)
        _png(tmp_path / name / "nested" / "y.png", 2)
        (tmp_path / name / "notes.txt").write_text("not an image")
        _png(tmp_path / name / ".hidden.png", 3)
    data = load_image_folder(tmp_path, (8, 8))
    assert sorted(data.keys) == ["a/nested/y.png", "a/x.png", "b/nested/y.png", "b/x.png"]
    assert data.skipped_files == ()
    assert list_image_folder(tmp_path).ignored == ("a/notes.txt", "b/notes.txt")


def test_load_skips_a_corrupt_png_with_a_warning_naming_it_and_counts_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for name in ("normal", "lesion"):
        _png(tmp_path / name / "good1.png", 50)
        _png(tmp_path / name / "good2.png", 60)
    good = (tmp_path / "lesion" / "good1.png").read_bytes()
    (tmp_path / "lesion" / "broken.png").write_bytes(good[: len(good) // 2])
    (tmp_path / "normal" / "garbage.png").write_bytes(b"this is not a png at all")
    with caplog.at_level(logging.WARNING, logger="medserve"):
        data = load_image_folder(tmp_path, (8, 8))
    assert len(data) == 4
    assert sorted(data.skipped_files) == ["lesion/broken.png", "normal/garbage.png"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("broken.png" in w for w in warnings)
    assert any("garbage.png" in w for w in warnings)


def test_empty_class_folder_is_a_usage_error_naming_it(tmp_path: Path) -> None:
    _png(tmp_path / "normal" / "a.png", 1)
    (tmp_path / "lesion").mkdir()
    with pytest.raises(UsageError, match="lesion"):
        list_image_folder(tmp_path)


def test_class_whose_files_are_all_unreadable_is_a_usage_error(tmp_path: Path) -> None:
    _png(tmp_path / "normal" / "a.png", 1)
    (tmp_path / "lesion").mkdir()
    (tmp_path / "lesion" / "bad.png").write_bytes(b"nope")
    with pytest.raises(UsageError, match="no readable image"):
        load_image_folder(tmp_path, (8, 8))


def test_folder_with_one_class_is_a_usage_error(tmp_path: Path) -> None:
    _png(tmp_path / "only" / "a.png", 1)
    with pytest.raises(UsageError, match="1 class subfolder"):
        list_image_folder(tmp_path)


def test_missing_folder_and_file_instead_of_folder_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        list_image_folder(tmp_path / "missing")
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="not a directory"):
        list_image_folder(tmp_path / "file")


def test_folder_fingerprint_changes_when_a_file_changes(tmp_path: Path) -> None:
    _png(tmp_path / "a" / "1.png", 1)
    _png(tmp_path / "b" / "1.png", 2)
    before = list_image_folder(tmp_path).fingerprint()
    assert list_image_folder(tmp_path).fingerprint() == before
    _png(tmp_path / "b" / "1.png", 3, size=(30, 30))
    assert list_image_folder(tmp_path).fingerprint() != before
