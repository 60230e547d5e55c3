"""DICOM for training: the pipeline's rendering through the folder loader, skips, no patient data.

The rendering rules themselves are the client pipeline's
(:mod:`medserve_client.preprocessing`); these tests check what training gets.
"""

from __future__ import annotations

import logging
import shutil
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from medserve.data import image_kind, load_image_folder
from medserve_client.preprocessing import to_model_input, to_rgb


def _testdata(name: str) -> Path:
    """The path of one of pydicom's test files."""
    return Path(str(get_testdata_file(name)))


CT_SMALL = _testdata("CT_small.dcm")
MR_SMALL = _testdata("MR_small.dcm")


def dicom_to_uint8(path: Path) -> np.ndarray:
    """The grey picture the pipeline renders, at the file's own size."""
    return to_rgb(path)[..., 0]


def load_image(path: Path, size: tuple[int, int]) -> np.ndarray:
    return to_model_input(path, size)


def _write_dicom(
    path: Path,
    frames: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    window: tuple[float, float] | None = None,
) -> Path:
    """A small uncompressed 16-bit greyscale DICOM file, one or more frames."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientName = "Test^Secret"
    ds.Modality = "OT"
    if frames.ndim == 3:
        ds.NumberOfFrames = frames.shape[0]
    ds.Rows, ds.Columns = frames.shape[-2:]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    ds.PixelData = frames.astype("<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def test_ct_small_loads_as_rgb_uint8_from_hounsfield_units() -> None:
    image = load_image(CT_SMALL, (32, 32))
    assert image.shape == (32, 32, 3)
    assert image.dtype == np.uint8
    assert np.array_equal(image[..., 0], image[..., 1])
    assert np.array_equal(image[..., 0], image[..., 2])
    # No window in the file: the rescaled values are stretched to the full range.
    native = dicom_to_uint8(CT_SMALL)
    assert native.shape == (128, 128)
    assert (native.min(), native.max()) == (0, 255)


def test_mr_small_applies_its_window_centre_and_width() -> None:
    ds = pydicom.dcmread(MR_SMALL)
    centre, width = float(ds.WindowCenter), float(ds.WindowWidth)
    raw = ds.pixel_array.astype(np.float64)
    # DICOM PS3.3 C.11.2.1.2.1, LINEAR, output 0..255.
    expected = np.clip((raw - (centre - 0.5)) / (width - 1) + 0.5, 0.0, 1.0) * 255.0
    image = load_image(MR_SMALL, (64, 64))  # native size: no resampling
    assert image.shape == (64, 64, 3)
    assert np.abs(image[..., 0].astype(np.float64) - expected).max() <= 1.0
    # The window clips: the brightest tissue saturates, unlike a min-max stretch.
    assert int(image.max()) == 255
    assert np.count_nonzero(image[..., 0] == 255) > np.count_nonzero(raw == raw.max())


def test_monochrome1_is_inverted_so_bright_means_dense(tmp_path: Path) -> None:
    ramp = np.arange(16, dtype=np.uint16).reshape(4, 4) * 100
    mono2 = dicom_to_uint8(_write_dicom(tmp_path / "m2.dcm", ramp))
    mono1 = dicom_to_uint8(_write_dicom(tmp_path / "m1.dcm", ramp, photometric="MONOCHROME1"))
    assert mono2[0, 0] == 0 and mono2[3, 3] == 255
    assert np.array_equal(mono1, 255 - mono2)


def test_multi_frame_dicom_uses_the_middle_frame(tmp_path: Path) -> None:
    frames = np.stack([np.full((4, 4), v, dtype=np.uint16) for v in (100, 2000, 4000)])
    path = _write_dicom(tmp_path / "cine.dcm", frames, window=(2048.0, 4096.0))
    picture = dicom_to_uint8(path)
    assert picture.shape == (4, 4)
    # Frame values 100, 2000, 4000 in a 0..4095 window map to about 6, 119, 249.
    assert 110 <= int(picture[0, 0]) <= 130


def test_dicom_without_suffix_is_recognised_by_its_preamble(tmp_path: Path) -> None:
    bare = tmp_path / "IM0001"
    shutil.copy(CT_SMALL, bare)
    assert image_kind(bare) == "dicom"
    assert image_kind(tmp_path / "notes.txt") is None


def _two_class_folder(tmp_path: Path) -> Path:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        shutil.copy(CT_SMALL, tmp_path / name / "ct.dcm")
        shutil.copy(MR_SMALL, tmp_path / name / "mr.dcm")
    return tmp_path


def test_corrupt_dicom_is_skipped_and_logs_never_carry_the_patient_name(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    patient = str(pydicom.dcmread(CT_SMALL).PatientName)
    assert patient  # the test file does carry a name
    folder = _two_class_folder(tmp_path)
    whole = CT_SMALL.read_bytes()
    (folder / "a" / "truncated.dcm").write_bytes(whole[: len(whole) - 5000])
    with caplog.at_level(logging.DEBUG), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_image_folder(folder, (16, 16))
    assert data.skipped_files == ("a/truncated.dcm",)
    assert "truncated.dcm" in caplog.text
    family = patient.split("^")[0]
    assert family not in caplog.text
    assert all(family not in str(w.message) for w in caught)


def test_compressed_dicom_without_decoder_is_skipped_naming_the_plugin(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pydicom.pixels.decoders.base import get_decoder
    from pydicom.uid import JPEGLSLossless

    # pydicom's decoder as on a machine without the [dicom] extra's plugins.
    decoder = get_decoder(JPEGLSLossless)
    monkeypatch.setattr(decoder, "_available", {})
    monkeypatch.setattr(decoder, "_unavailable", {"pylibjpeg": ("pylibjpeg-libjpeg>=2.1",)})
    folder = _two_class_folder(tmp_path)
    shutil.copy(_testdata("MR_small_jpeg_ls_lossless.dcm"), folder / "b" / "jls.dcm")
    with caplog.at_level(logging.WARNING, logger="medserve"):
        data = load_image_folder(folder, (16, 16))
    assert data.skipped_files == ("b/jls.dcm",)
    message = next(r.getMessage() for r in caplog.records if "jls.dcm" in r.getMessage())
    assert "JPEG-LS" in message
    assert "pylibjpeg-libjpeg" in message


def test_compressed_dicom_is_read_with_the_dicom_extra(tmp_path: Path) -> None:
    folder = _two_class_folder(tmp_path)
    shutil.copy(_testdata("MR_small_jpeg_ls_lossless.dcm"), folder / "b" / "jls.dcm")
    data = load_image_folder(folder, (16, 16))
    assert data.skipped_files == ()
    assert "b/jls.dcm" in data.keys


def test_dicom_without_preamble_is_listed_and_read(tmp_path: Path) -> None:
    from pydicom.dataset import FileMetaDataset

    folder = _two_class_folder(tmp_path)
    dataset = pydicom.dcmread(CT_SMALL)
    dataset.preamble = None
    dataset.file_meta = FileMetaDataset()
    bare = folder / "a" / "IM0002"
    dataset.save_as(bare, implicit_vr=True, little_endian=True, enforce_file_format=False)
    assert image_kind(bare) == "dicom"
    data = load_image_folder(folder, (16, 16))
    assert "a/IM0002" in data.keys and data.skipped_files == ()


def test_dicom_without_pixel_data_is_skipped(tmp_path: Path) -> None:
    folder = _two_class_folder(tmp_path)
    shutil.copy(_testdata("rtplan.dcm"), folder / "a" / "plan.dcm")
    data = load_image_folder(folder, (16, 16))
    assert data.skipped_files == ("a/plan.dcm",)
