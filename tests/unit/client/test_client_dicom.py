"""DICOM inputs: modality LUT, windowing, MONOCHROME1, frames, codecs, and no patient data."""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from medserve_client import Client, DicomSource, InvalidInputError, Window
from medserve_client._inputs import prepare_encoded, prepare_tensor
from medserve_client.preprocessing._dicom import dicom_to_rgb
from medserve_client.testing import MockTransport


def _local(name: str) -> str:
    # Only files shipped in the pydicom wheel: never let pydicom download.
    path = get_testdata_file(name, download=False)
    assert path is not None, name
    return str(path)


CT = _local("CT_small.dcm")
MR = _local("MR_small.dcm")
# Attributes of CT_small.dcm that must never appear in a message or a log line.
CT_PATIENT = [
    str(pydicom.dcmread(CT).get(keyword))
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber")
    if str(pydicom.dcmread(CT).get(keyword) or "")
]


def test_ct_small_has_patient_attributes_to_protect() -> None:
    assert "CompressedSamples^CT1" in CT_PATIENT and "1CT1" in CT_PATIENT


def test_ct_without_a_window_is_modality_lut_then_min_max_stretched() -> None:
    dataset = pydicom.dcmread(CT)
    rgb = dicom_to_rgb(dataset, what="ct")
    assert rgb.dtype == np.uint8 and rgb.shape == (128, 128, 3)
    assert rgb.min() == 0 and rgb.max() == 255
    assert np.array_equal(rgb[..., 0], rgb[..., 1])


def test_a_window_override_applies_the_dicom_linear_formula_to_hounsfield_units() -> None:
    dataset = pydicom.dcmread(CT)
    hu = dataset.pixel_array * float(dataset.RescaleSlope) + float(dataset.RescaleIntercept)
    rgb = dicom_to_rgb(dataset, what="ct", window=Window(center=40, width=400))
    expected = np.clip(np.rint(((hu - 39.5) / 399 + 0.5) * 255), 0, 255)
    np.testing.assert_array_equal(rgb[..., 0], expected.astype(np.uint8))
    # Below the window is black, above is white.
    assert np.all(rgb[..., 0][hu <= 40 - 200] == 0)
    assert np.all(rgb[..., 0][hu > 40 + 200] == 255)


def test_the_files_own_window_centre_and_width_are_used_when_present() -> None:
    dataset = pydicom.dcmread(MR)
    center, width = float(dataset.WindowCenter), float(dataset.WindowWidth)
    stored = dicom_to_rgb(dataset, what="mr")
    explicit = dicom_to_rgb(dataset, what="mr", window=Window(center=center, width=width))
    np.testing.assert_array_equal(stored, explicit)
    other = dicom_to_rgb(dataset, what="mr", window=Window(center=center, width=width / 4))
    assert not np.array_equal(stored, other)


def test_a_voi_lut_sequence_takes_precedence_over_min_max() -> None:
    dataset = pydicom.dcmread(CT)
    item = pydicom.Dataset()
    item.LUTDescriptor = [4096, -2048, 8]  # 4096 entries from HU -2048, 8-bit output.
    lut = np.zeros(4096, dtype=np.uint16)
    lut[2048 + 50 :] = 255  # A threshold at 50 HU.
    item.LUTData = lut.tolist()
    dataset.VOILUTSequence = pydicom.Sequence([item])
    rgb = dicom_to_rgb(dataset, what="ct")
    assert set(np.unique(rgb)) <= {0, 255}


def test_monochrome1_is_inverted_relative_to_monochrome2() -> None:
    dataset = pydicom.dcmread(CT)
    inverted = copy.deepcopy(dataset)
    inverted.PhotometricInterpretation = "MONOCHROME1"
    window = Window(center=40, width=400)
    normal = dicom_to_rgb(dataset, what="ct", window=window)
    flipped = dicom_to_rgb(inverted, what="ct", window=window)
    np.testing.assert_array_equal(flipped.astype(np.int32), 255 - normal.astype(np.int32))


def test_multi_frame_files_default_to_the_middle_frame_and_take_an_explicit_one() -> None:
    path = _local("rtdose.dcm")
    default = prepare_tensor(path, index=0, target_hw=(8, 8))
    middle = prepare_tensor(DicomSource(path, frame=7), index=0, target_hw=(8, 8))
    first = prepare_tensor(DicomSource(path, frame=0), index=0, target_hw=(8, 8))
    np.testing.assert_array_equal(default, middle)
    assert first.shape == (8, 8, 3) and not np.array_equal(first, middle)
    with pytest.raises(InvalidInputError, match=r"out of range 0\.\.14"):
        prepare_tensor(DicomSource(path, frame=15), index=0, target_hw=(8, 8))


def _without_plugins(monkeypatch: pytest.MonkeyPatch, uid: str) -> None:
    """pydicom's decoder for ``uid`` as on a machine without the [dicom] extra."""
    from pydicom.pixels.decoders.base import get_decoder

    decoder = get_decoder(uid)
    monkeypatch.setattr(decoder, "_available", {})
    monkeypatch.setattr(
        decoder, "_unavailable", {"pylibjpeg": ("pylibjpeg>=2.0", "pylibjpeg-libjpeg>=2.1")}
    )


def test_compressed_transfer_syntaxes_decode_with_the_dicom_extra() -> None:
    for name in ("MR_small_jpeg_ls_lossless.dcm", "JPGExtended.dcm", "MR_small_jp2klossless.dcm"):
        assert prepare_tensor(_local(name), index=0, target_hw=(8, 8)).shape == (8, 8, 3)
    # Lossless JPEG-LS gives back exactly the uncompressed file's pixels.
    lossless = prepare_tensor(_local("MR_small_jpeg_ls_lossless.dcm"), index=0, target_hw=(64, 64))
    np.testing.assert_array_equal(lossless, prepare_tensor(MR, index=0, target_hw=(64, 64)))


def test_a_compressed_transfer_syntax_without_decoder_names_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _without_plugins(monkeypatch, "1.2.840.10008.1.2.4.80")
    path = _local("MR_small_jpeg_ls_lossless.dcm")
    with pytest.raises(
        InvalidInputError,
        match=r"1\.2\.840\.10008\.1\.2\.4\.80.*medserve-client\[dicom\].*pylibjpeg-libjpeg",
    ):
        prepare_tensor(path, index=0, target_hw=(8, 8))


def test_a_dataset_without_preamble_is_read_and_other_bytes_are_not_forced(
    tmp_path: Path,
) -> None:
    from pydicom.dataset import FileMetaDataset

    dataset = pydicom.dcmread(CT)
    dataset.preamble = None
    dataset.file_meta = FileMetaDataset()
    bare = tmp_path / "IM0001"
    dataset.save_as(bare, implicit_vr=True, little_endian=True, enforce_file_format=False)
    assert bare.read_bytes()[128:132] != b"DICM"
    np.testing.assert_array_equal(
        prepare_tensor(bare, index=0, target_hw=(16, 16)),
        prepare_tensor(CT, index=0, target_hw=(16, 16)),
    )
    with pytest.raises(InvalidInputError, match="not an image Pillow can read"):
        prepare_tensor(b"\x00" * 300, index=0, target_hw=(8, 8))


def test_dicom_is_recognised_by_magic_as_path_bytes_and_dataset() -> None:
    as_path = prepare_tensor(CT, index=0, target_hw=(32, 32))
    as_bytes = prepare_tensor(Path(CT).read_bytes(), index=0, target_hw=(32, 32))
    as_dataset = prepare_tensor(pydicom.dcmread(CT), index=0, target_hw=(32, 32))
    np.testing.assert_array_equal(as_path, as_bytes)
    np.testing.assert_array_equal(as_path, as_dataset)


def test_dicom_goes_to_the_encoded_entry_point_as_a_rendered_png() -> None:
    payload = prepare_encoded(CT, index=0)
    assert payload.startswith(b"\x89PNG")


def test_no_patient_attribute_reaches_messages_or_logs(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG)
    messages: list[str] = []
    dataset = pydicom.dcmread(CT)
    truncated = tmp_path / "truncated.dcm"
    truncated.write_bytes(Path(CT).read_bytes()[:600])
    failing = [
        DicomSource(CT, frame=3),
        DicomSource(dataset, frame=1),
        truncated,
    ]
    no_pixels = copy.deepcopy(dataset)
    del no_pixels.PixelData
    failing.append(no_pixels)
    for value in failing:
        with pytest.raises(InvalidInputError) as info:
            prepare_tensor(value, index=0, target_hw=(8, 8))
        messages.append(str(info.value))
    fake = MockTransport(max_batch_size=2)
    with Client("127.0.0.1:1", transport=fake, retries=0) as client:
        client.classify([CT, dataset, DicomSource(CT, window=Window(center=0, width=100))])
        with pytest.raises(InvalidInputError) as info:
            client.classify([CT, DicomSource(CT, frame=2)])
        messages.append(str(info.value))
    text = "\n".join(messages) + "\n" + caplog.text
    for secret in CT_PATIENT:
        assert secret not in text
    assert any("CT_small.dcm" in message for message in messages)  # Named by its path.


def _rgb_dataset(pixels: np.ndarray) -> pydicom.Dataset:
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    dataset = pydicom.Dataset()
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.Rows, dataset.Columns = pixels.shape[:2]
    dataset.SamplesPerPixel = 3
    dataset.PhotometricInterpretation = "RGB"
    dataset.PlanarConfiguration = 0
    dataset.BitsAllocated = dataset.BitsStored = 8
    dataset.HighBit = 7
    dataset.PixelRepresentation = 0
    dataset.PixelData = pixels.tobytes()
    return dataset


def test_colour_dicom_keeps_its_rgb_values() -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    np.testing.assert_array_equal(dicom_to_rgb(_rgb_dataset(pixels), what="rgb"), pixels)
