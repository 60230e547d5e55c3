"""Training, the client and the server's decoder see the same pixels.

The corpus is built here: an EXIF-rotated JPEG, a JPEG several times the
model's size, 16-bit, palette and RGBA PNGs, and from pydicom's own test files
CT (with and without a stored window), MR (LINEAR and SIGMOID windows),
MONOCHROME1, a DICOM file without its preamble, multi-frame greyscale and
colour, PALETTE COLOR and compressed (JPEG-LS, 12-bit JPEG) DICOM.

- Training pixels (``medserve.data.load_image_folder``) equal the tensors
  ``Client.classify`` puts on the wire (recorded by ``MockTransport``)
  exactly, for every kind of source the client takes.
- The server's decoders on the bytes ``Client(send_encoded=True)`` sends: the
  ``<model>_preprocess`` SavedModel (TensorFlow images) stays within the bound
  documented in :mod:`medserve_client.preprocessing`; the Pillow decoder of
  the ONNX configs (``decode_pillow.py``) gives exactly the pipeline's pixels.
- Each rule changed on one side only, training or client (a mutant below),
  makes the comparison fail: the parity is not true by accident of the corpus.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from medserve.data import load_image_folder
from medserve_client import Client
from medserve_client.preprocessing import _dicom, _raster, _sources
from medserve_client.testing import MockTransport

SIZE = (32, 32)
# The server decoder's documented bound (medserve_client.preprocessing).
MAX_LEVELS = 1
MAX_DIFFERING_FRACTION = 0.01
LARGE_JPEG = "a/large.jpg"


def _testdata(name: str) -> Path:
    path = get_testdata_file(name, download=False)
    assert path is not None, name
    return Path(path)


def _save(image: Image.Image, path: Path, **options: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **options)


def _photo(height: int, width: int, seed: int) -> np.ndarray:
    """Smooth structure and noise: photo-like, asymmetric, so rotations show."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (max(2, height // 8), max(2, width // 8), 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(base).resize((width, height), Image.Resampling.BICUBIC))
    return np.clip(smooth + rng.normal(0, 10, smooth.shape), 0, 255).astype(np.uint8)


def _dicom_variant(source: str, target: Path, **changes: Any) -> None:
    dataset = pydicom.dcmread(_testdata(source))
    for keyword, value in changes.items():
        setattr(dataset, keyword, value)
    target.parent.mkdir(parents=True, exist_ok=True)
    dataset.save_as(target)


def _without_preamble(source: str, target: Path) -> None:
    """The dataset alone, as older archives store it: no preamble, no file meta."""
    from pydicom.dataset import FileMetaDataset

    dataset = pydicom.dcmread(_testdata(source))
    dataset.preamble = None
    dataset.file_meta = FileMetaDataset()
    buffer = io.BytesIO()
    dataset.save_as(buffer, implicit_vr=True, little_endian=True, enforce_file_format=False)
    data = buffer.getvalue()
    assert data[128:132] != b"DICM"
    target.write_bytes(data)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-class training folder holding every case of the parity test."""
    root = tmp_path_factory.mktemp("parity")
    rotated = Image.fromarray(_photo(24, 40, seed=1))
    exif = rotated.getexif()
    exif[_raster.EXIF_ORIENTATION] = 6
    _save(rotated, root / "a" / "exif_rotated.jpg", exif=exif.tobytes(), quality=95)
    _save(Image.fromarray(_photo(200, 160, seed=2)), root / LARGE_JPEG, quality=90)
    ramp = (np.arange(48 * 40, dtype=np.uint32).reshape(48, 40) * 34).astype(np.uint16)
    _save(Image.fromarray(ramp), root / "a" / "grey16.png")
    _save(Image.fromarray(_photo(40, 36, seed=3)).quantize(colors=16), root / "a" / "palette.png")
    rgba = np.dstack([_photo(30, 50, seed=4), np.linspace(0, 255, 1500).reshape(30, 50)])
    _save(Image.fromarray(rgba.astype(np.uint8), "RGBA"), root / "a" / "rgba.png")
    dicom = root / "b"
    dicom.mkdir()
    for name in (
        "CT_small.dcm",
        "MR_small.dcm",
        "rtdose.dcm",  # 15 frames: the middle one
        "examples_palette.dcm",
        "examples_ybr_color.dcm",  # 30 frames, YBR_FULL_422
        "MR_small_jpeg_ls_lossless.dcm",  # JPEG-LS (pylibjpeg-libjpeg)
        "JPGExtended.dcm",  # 12-bit JPEG (pylibjpeg-libjpeg)
    ):
        shutil.copy(_testdata(name), dicom / name)
    _dicom_variant("CT_small.dcm", dicom / "ct_windowed.dcm", WindowCenter=40, WindowWidth=400)
    _dicom_variant("CT_small.dcm", dicom / "ct_mono1.dcm", PhotometricInterpretation="MONOCHROME1")
    _dicom_variant("MR_small.dcm", dicom / "mr_sigmoid.dcm", VOILUTFunction="SIGMOID")
    _without_preamble("CT_small.dcm", dicom / "IM0001")
    return root


def _sources_of(path: Path) -> list[Any]:
    """Every kind of source the client accepts for this file."""
    if path.suffix in (".png", ".jpg"):
        return [path, str(path), path.read_bytes(), Image.open(path)]
    return [path, path.read_bytes(), pydicom.dcmread(path, force=True)]


def _on_the_wire(sources: list[Any], *, encoded: bool) -> list[Any]:
    """What ``Client.classify`` sends for each source: a uint8 tensor, or encoded bytes."""
    transport = MockTransport(size=SIZE[0], max_batch_size=1)
    with Client("mock:0", transport=transport, send_encoded=encoded, retries=0) as client:
        client.model_info()  # Metadata and the label probe: not the inputs.
        first = len(transport.calls)
        client.classify(sources)
    model = transport.encoded_model if encoded else transport.model
    sent = [call.array for call in transport.calls[first:] if call.model == model]
    arrays = [array for array in sent if array is not None]
    assert len(arrays) == len(sources)
    return [array.reshape(-1)[0] if encoded else array[0] for array in arrays]


def _client_pixels(corpus: Path) -> dict[str, list[np.ndarray]]:
    files = sorted(p for p in corpus.rglob("*") if p.is_file())
    return {
        path.relative_to(corpus).as_posix(): _on_the_wire(_sources_of(path), encoded=False)
        for path in files
    }


def _sent_encoded(path: Path) -> bytes:
    payload = _on_the_wire([path], encoded=True)[0]
    assert isinstance(payload, bytes)
    return payload


def _mismatches(corpus: Path, client: dict[str, list[np.ndarray]]) -> list[str]:
    training = load_image_folder(corpus, SIZE)
    assert not training.skipped_files, training.skipped_files
    assert set(training.keys) == set(client)
    found = []
    for key, image in zip(training.keys, training.images, strict=True):
        for number, tensor in enumerate(client[key]):
            if not np.array_equal(image, tensor):
                found.append(f"{key} (source kind {number})")
    return found


@pytest.fixture(scope="module")
def client_pixels(corpus: Path) -> dict[str, list[np.ndarray]]:
    return _client_pixels(corpus)


def test_training_pixels_equal_the_clients_for_every_source_kind(
    corpus: Path, client_pixels: dict[str, list[np.ndarray]]
) -> None:
    assert len(client_pixels) == 16
    assert _mismatches(corpus, client_pixels) == []


def test_the_corpus_exercises_each_rule(client_pixels: dict[str, list[np.ndarray]]) -> None:
    first = {key: tensors[0] for key, tensors in client_pixels.items()}
    assert not np.array_equal(first["b/ct_windowed.dcm"], first["b/CT_small.dcm"])
    np.testing.assert_array_equal(
        first["b/ct_mono1.dcm"].astype(int), 255 - first["b/CT_small.dcm"].astype(int)
    )
    np.testing.assert_array_equal(first["b/IM0001"], first["b/CT_small.dcm"])
    palette = first["b/examples_palette.dcm"].astype(int)
    assert np.abs(palette[..., 0] - palette[..., 2]).max() > 50  # Colour, not grey.


# One rule changed on one side only ----------------------------------------------------


def _no_exif(image: Image.Image, orientation: int) -> Image.Image:
    return image


def _rounded_16_bit(values: np.ndarray) -> np.ndarray:
    return ((np.clip(values, 0, 65535) * 255 + 32767) // 65535).astype(np.uint8)


def _uint8_resize(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    image = Image.fromarray(rgb).resize(size[::-1], Image.Resampling.BILINEAR)
    return np.asarray(image)


def _composited_alpha(original: Callable[[Image.Image], np.ndarray]) -> Callable[..., Any]:
    def variant(image: Image.Image) -> np.ndarray:
        if image.mode == "RGBA":
            white = Image.new("RGBA", image.size, (255, 255, 255, 255))
            image = Image.alpha_composite(white, image)
        return original(image)

    return variant


def _palette_png_as_grey(original: Callable[[Image.Image], np.ndarray]) -> Callable[..., Any]:
    def variant(image: Image.Image) -> np.ndarray:
        return original(image.convert("L") if image.mode == "P" else image)

    return variant


def _first_frame(original: Callable[..., np.ndarray]) -> Callable[..., Any]:
    def variant(dataset: Any, *, what: str, frame: int | None) -> np.ndarray:
        return original(dataset, what=what, frame=0 if frame is None else frame)

    return variant


def _linear_window_only(original: Callable[..., np.ndarray]) -> Callable[..., Any]:
    """The old client rule: a LINEAR window whatever the VOI LUT Function says."""

    def variant(values: np.ndarray, dataset: Any) -> np.ndarray:
        if dataset.get("VOILUTFunction", "LINEAR") != "LINEAR":
            dataset = _dicom._window_view(dataset, _window_of(dataset))
        return original(values, dataset)

    return variant


def _window_of(dataset: Any) -> Any:
    from medserve_client import Window

    return Window(center=float(dataset.WindowCenter), width=float(dataset.WindowWidth))


def _no_modality_lut(pixels: np.ndarray, dataset: Any) -> np.ndarray:
    return pixels


def _palette_dicom_as_grey(original: Callable[..., np.ndarray]) -> Callable[..., Any]:
    def variant(pixels: np.ndarray, dataset: Any, *, photometric: str, what: str) -> np.ndarray:
        if photometric == "PALETTE COLOR":
            grey = np.round(pixels * (255.0 / max(1, int(pixels.max())))).astype(np.uint8)
            return np.repeat(grey[:, :, None], 3, axis=2)
        return original(pixels, dataset, photometric=photometric, what=what)

    return variant


def _draft_decoded(original: Callable[..., Image.Image]) -> Callable[..., Any]:
    """The old client rule: large JPEGs decoded at a reduced scale (DCT scaling)."""

    def variant(data: bytes, *, what: str, max_pixels: int) -> Image.Image:
        image = Image.open(io.BytesIO(data))
        if image.format == "JPEG":
            image.draft("RGB", (2 * SIZE[1], 2 * SIZE[0]))
            image.load()
            return image
        return original(data, what=what, max_pixels=max_pixels)

    return variant


@dataclass(frozen=True)
class Mutant:
    """One pixel rule changed: where, and into what."""

    rule: str
    module: Any
    name: str
    make: Callable[[Any], Any]


MUTANTS = [
    Mutant("EXIF orientation ignored", _raster, "upright", lambda _: _no_exif),
    Mutant(
        "16-bit rounded, not the high byte", _raster, "sixteen_to_eight", lambda _: _rounded_16_bit
    ),
    Mutant("resize on uint8", _sources, "resize", lambda _: _uint8_resize),
    Mutant("alpha composited on white", _sources, "pil_to_rgb", _composited_alpha),
    Mutant("palette PNG through grey", _sources, "pil_to_rgb", _palette_png_as_grey),
    Mutant("JPEG draft-decoded", _sources, "decode_image", _draft_decoded),
    Mutant("first frame, not the middle one", _dicom, "_decode_frame", _first_frame),
    Mutant("LINEAR window whatever the VOI function", _dicom, "_voi_to_unit", _linear_window_only),
    Mutant("no modality LUT", _dicom, "_modality_lut", lambda _: _no_modality_lut),
    Mutant("MONOCHROME1 not inverted", _dicom, "_MONOCHROME1", lambda _: "NOT-MONOCHROME1"),
    Mutant("PALETTE COLOR as grey", _dicom, "_colour_to_uint8", _palette_dicom_as_grey),
]


@contextmanager
def _mutated(mutant: Mutant) -> Iterator[None]:
    original = getattr(mutant.module, mutant.name)
    setattr(mutant.module, mutant.name, mutant.make(original))
    try:
        yield
    finally:
        setattr(mutant.module, mutant.name, original)


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.rule for m in MUTANTS])
def test_parity_fails_when_one_rule_changes_on_the_training_side_only(
    mutant: Mutant, corpus: Path, client_pixels: dict[str, list[np.ndarray]]
) -> None:
    with _mutated(mutant):
        found = _mismatches(corpus, client_pixels)
    assert found, f"changing '{mutant.rule}' for training only went unnoticed"


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.rule for m in MUTANTS])
def test_parity_fails_when_one_rule_changes_on_the_client_side_only(
    mutant: Mutant, corpus: Path
) -> None:
    with _mutated(mutant):
        mutated_client = _client_pixels(corpus)
    assert _mismatches(corpus, mutated_client), f"changing '{mutant.rule}' for the client only"


# The server's decoder ---------------------------------------------------------------


@pytest.fixture(scope="module")
def server_decoder(tmp_path_factory: pytest.TempPathFactory) -> Callable[[bytes], np.ndarray]:
    """The decode-and-resize SavedModel of the encoded entry point, run in-process."""
    from medserve.loaders import run_eager
    from medserve.savedmodel import write_preprocess_savedmodel
    from medserve.spec import ModelSpec

    spec = ModelSpec(image_size=SIZE)
    path = tmp_path_factory.mktemp("decoder") / "model.savedmodel"
    write_preprocess_savedmodel(path, spec)

    def decode(payload: bytes) -> np.ndarray:
        feeds = {spec.encoded_input_name: np.array([[payload]], dtype=object)}
        return run_eager(path, feeds)[spec.input_name][0]

    return decode


def test_the_server_decoder_stays_within_the_documented_bound(
    corpus: Path,
    client_pixels: dict[str, list[np.ndarray]],
    server_decoder: Callable[[bytes], np.ndarray],
) -> None:
    report = []
    for key, tensors in client_pixels.items():
        served = server_decoder(_sent_encoded(corpus / key)).astype(int)
        diff = np.abs(served - tensors[0].astype(int))
        report.append(
            f"{key}: max {diff.max()}, mean {diff.mean():.3f}, differing {np.mean(diff > 0):.4f}"
        )
        assert diff.max() <= MAX_LEVELS, report
        assert np.mean(diff > 0) <= MAX_DIFFERING_FRACTION, report


@pytest.mark.parametrize("name", ["a/grey16.png", "a/palette.png", "a/rgba.png", LARGE_JPEG])
def test_files_the_server_reads_alike_are_sent_as_they_are(corpus: Path, name: str) -> None:
    assert _sent_encoded(corpus / name) == (corpus / name).read_bytes()


def test_the_server_decoder_ignores_exif_so_the_client_sends_upright_pixels(
    corpus: Path,
    client_pixels: dict[str, list[np.ndarray]],
    server_decoder: Callable[[bytes], np.ndarray],
) -> None:
    path = corpus / "a" / "exif_rotated.jpg"
    payload = _sent_encoded(path)
    assert payload.startswith(b"\x89PNG")
    upright = client_pixels["a/exif_rotated.jpg"][0].astype(int)
    as_stored = server_decoder(path.read_bytes()).astype(int)
    # Sent as stored, the server would see it sideways: beyond any rounding bound.
    assert np.abs(as_stored - upright).mean() > 10


def test_the_pillow_decoder_of_the_onnx_configs_gives_exactly_the_pipelines_pixels(
    corpus: Path, client_pixels: dict[str, list[np.ndarray]]
) -> None:
    from medserve.triton_backend.decode_pillow import decode

    for key, tensors in client_pixels.items():
        decoded = decode(
            _sent_encoded(corpus / key), height=SIZE[0], width=SIZE[1], max_pixels=10**8
        )
        np.testing.assert_array_equal(decoded, tensors[0], err_msg=key)
