"""The public pixel pipeline: its surface, and every DICOM file pydicom ships.

That importing it pulls in neither TensorFlow nor pydicom is checked with the
package's other imports in ``test_client_package.py`` (the CLI imports it).

The rules themselves are tested in ``test_client_preprocess.py`` and
``test_client_dicom.py`` (through the client) and compared with training and
the server's decoder in ``tests/unit/test_pixel_parity.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from medserve_client import preprocessing
from medserve_client.preprocessing import InvalidInputError, is_dicom, to_model_input

_PATIENT_KEYWORDS = ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber")


def _pydicom_files() -> list[Path]:
    anchor = get_testdata_file("CT_small.dcm", download=False)
    assert anchor is not None
    return sorted(Path(anchor).parent.glob("*.dcm"))


def test_all_is_sorted_and_names_only_what_exists() -> None:
    assert preprocessing.__all__ == sorted(
        preprocessing.__all__, key=lambda name: (not name.isupper(), not name[0].isupper(), name)
    )
    for name in preprocessing.__all__:
        assert hasattr(preprocessing, name)


def test_is_dicom_takes_paths_and_bytes_and_is_false_for_unreadable_paths(
    tmp_path: Path,
) -> None:
    ct = Path(get_testdata_file("CT_small.dcm", download=False) or "")
    assert is_dicom(ct) and is_dicom(str(ct)) and is_dicom(ct.read_bytes())
    assert not is_dicom(tmp_path / "missing.dcm")
    assert not is_dicom(b"\x89PNG\r\n\x1a\n" + bytes(200))


@pytest.mark.parametrize("path", _pydicom_files(), ids=lambda path: path.name)
def test_every_pydicom_test_file_is_classified_or_refused_clearly(path: Path) -> None:
    """Model input or an InvalidInputError naming the file: never a crash, never a patient."""
    try:
        tensor = to_model_input(path, (16, 16))
    except InvalidInputError as exc:
        message = str(exc)
        assert message.startswith(f"{path}: ")
        header = pydicom.dcmread(path, force=True, stop_before_pixels=True)
        for keyword in _PATIENT_KEYWORDS:
            value = str(header.get(keyword) or "")
            assert len(value) < 3 or value not in message, keyword
        return
    assert tensor.shape == (16, 16, 3) and tensor.dtype == np.uint8


@pytest.mark.parametrize(
    "name",
    [
        "SC_rgb_jpeg_gdcm.dcm",  # JPEG Lossless, first-order prediction
        "JPGExtended.dcm",  # JPEG Extended, 12-bit
        "MR_small_jpeg_ls_lossless.dcm",  # JPEG-LS lossless
        "JPEGLSNearLossless_16.dcm",  # JPEG-LS near-lossless
        "GDCMJ2K_TextGBR.dcm",  # JPEG 2000 lossless
        "MR_small_jp2klossless.dcm",
        "MR_small_RLE.dcm",
        "rtdose.dcm",  # 15 frames
        "SC_rgb_rle_2frame.dcm",
    ],
)
def test_compressed_and_multi_frame_files_archives_send_are_classified(name: str) -> None:
    path = get_testdata_file(name, download=False)
    assert to_model_input(path, (16, 16)).shape == (16, 16, 3)
