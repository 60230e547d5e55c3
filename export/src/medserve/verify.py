"""Check that a model repository is what ``medserve export`` promises.

Usage::

    report = verify_repository(Path("model_repository"), model_name="medcnn")
    for line in report.lines():
        print(line)

Checks, in order, stopping with a :class:`~medserve.errors.VerificationError`
at the first problem: the spec and labels; every config parses as Triton's
``ModelConfig`` and its tensors match its artifact (the SavedModel's
``serving_default`` signature, or ``model.onnx``'s graph inputs and outputs
for ``onnx-gpu``/``onnx-cpu``: names, data types, dims without the batch
dimension); the label count equals the output width; the sha256 of every file
matches its model card; the classifier SavedModel gives the outputs recorded
at export (within 1e-5) both through ``tf.saved_model.load`` and through the
TF1 session loader Triton's TF backend uses, and ``model.onnx`` does under
onnxruntime with the recorded opset; the decoder decodes PNG and JPEG to the
served shape and rejects a corrupt image, and so does the Pillow decoder of
the ONNX configs, which also refuses images above its pixel cap; the ensemble
wires the two together; ``model_card.md``, when present, is the current
rendering of ``model_card.json``.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from medserve.decode_guard import REFUSAL_TEXT, png_header
from medserve.errors import MedServeError, UsageError, VerificationError
from medserve.explain.artifact import check_explain_savedmodel
from medserve.loaders import read_signature, run_eager, run_session
from medserve.model_card import CARD_FILES, read_model_card
from medserve.model_card_render import render_card_markdown
from medserve.model_config import (
    EXPLAIN_CONFIG_KINDS,
    ONNX_KINDS,
    config_kinds,
    config_path,
    preprocess_name,
)
from medserve.onnx_loaders import read_onnx_signature
from medserve.repository import existing_versions, file_checksums
from medserve.spec import (
    LABELS_FILENAME,
    MODEL_CARD_FILENAME,
    MODEL_CARD_MARKDOWN_FILENAME,
    ONNX_FILENAME,
    SAVEDMODEL_DIRNAME,
    SPEC_FILENAME,
    ModelSpec,
)
from medserve.verify_config import (
    check_classifier_config,
    check_ensemble,
    check_explain_config,
    check_preprocess_config,
)
from medserve.verify_onnx import check_classifier_onnx, check_pillow_decoder

if TYPE_CHECKING:
    import keras
    import numpy as np

EXPECTED_IO_FILENAME = "expected_io.npz"
TOLERANCE = 1e-5


@dataclass(frozen=True)
class Check:
    """One passed check: what was checked and what was found."""

    subject: str
    detail: str

    def line(self) -> str:
        """The report line ``ok  <subject>: <detail>``."""
        return f"ok  {self.subject}: {self.detail}"


@dataclass
class VerifyReport:
    """Every check that passed for one version of a repository.

    Attributes:
        repo: The repository directory.
        model_name: The classifier's model name.
        version: The version verified.
        checks: Passed checks in the order they ran.
    """

    repo: Path
    model_name: str
    version: int
    checks: list[Check] = field(default_factory=list)

    def lines(self) -> list[str]:
        """One human-readable line per check."""
        return [check.line() for check in self.checks]


def verify_repository(
    repo: Path,
    *,
    model_name: str = "medcnn",
    version: int | None = None,
    reference_model: keras.Model | None = None,
    progress: Callable[[Check], None] | None = None,
    prechecked: Mapping[str, list[str]] | None = None,
) -> VerifyReport:
    """Verify the classifier, decoder and ensemble of ``model_name`` in ``repo``.

    Args:
        repo: Repository directory.
        model_name: Classifier model name (decoder and ensemble names follow).
        version: Version to verify; default the newest.
        reference_model: The Keras model, when at hand (at export): its outputs
            must also match the recorded ones.
        progress: Called with each check as it passes (the CLI prints them).
        prechecked: Results of :func:`check_classifier_savedmodel` /
            :func:`check_preprocess_savedmodel` by model name (and of
            :func:`check_classifier_onnx` under :func:`onnx_precheck_key`), from the
            exporter, which ran them on these very files before renaming them
            into place; the checksum check proves the bytes are unchanged, so
            the loaders are not run a second time.

    Raises:
        UsageError: ``repo``, ``model_name`` or ``version`` does not exist.
        VerificationError: naming the file and what is wrong, at the first problem.
    """
    # What the caller named does not exist: a user error (exit 2), not a
    # repository that failed a check (exit 1).
    if not repo.is_dir():
        raise UsageError(f"repository {repo} does not exist or is not a directory")
    model_dir = repo / model_name
    if not model_dir.is_dir():
        raise UsageError(
            f"no model directory {model_dir}; run `medserve export` first or pass --name"
        )
    versions = existing_versions(model_dir)
    if version is None:
        if not versions:
            raise VerificationError(f"{model_dir} has no numeric version directory")
        version = versions[-1]
    elif version not in versions:
        raise UsageError(f"{model_dir} has no version {version} (found {versions})")

    report = VerifyReport(repo=repo, model_name=model_name, version=version)

    def passed(subject: Path | str, detail: str) -> None:
        name = subject.relative_to(repo).as_posix() if isinstance(subject, Path) else subject
        check = Check(name, detail)
        report.checks.append(check)
        if progress is not None:
            progress(check)

    spec = _read_spec(model_dir, model_name)
    passed(model_dir / SPEC_FILENAME, f"{spec.num_classes} labels, input {spec.input_shape}")
    labels = _read_labels(model_dir / LABELS_FILENAME)
    if len(labels) != spec.num_classes:
        raise VerificationError(
            f"{model_dir / LABELS_FILENAME} has {len(labels)} labels but the model outputs "
            f"{spec.num_classes} classes ({SPEC_FILENAME}: {list(spec.labels)}); re-export "
            "with the right labels"
        )
    if tuple(labels) != spec.labels:
        raise VerificationError(
            f"{model_dir / LABELS_FILENAME} lists {labels} but {SPEC_FILENAME} says "
            f"{list(spec.labels)}"
        )
    passed(model_dir / LABELS_FILENAME, f"{len(labels)} labels match the spec")

    version_dir = model_dir / str(version)
    _check_checksums(version_dir, passed)
    with_onnx = (version_dir / ONNX_FILENAME).is_file()
    kinds = config_kinds(onnx=with_onnx)
    _check_no_stray_onnx_configs(model_dir, version_dir, with_onnx)
    signatures = {"savedmodel": read_signature(version_dir / SAVEDMODEL_DIRNAME)}
    if with_onnx:
        signatures["onnx"] = read_onnx_signature(version_dir / ONNX_FILENAME)
    for kind in kinds:
        path = config_path(model_dir, kind)
        signature = signatures["onnx" if kind in ONNX_KINDS else "savedmodel"]
        passed(path, check_classifier_config(path, kind, spec, signature))
    prechecked = prechecked or {}
    details = prechecked.get(spec.name)
    if details is None:
        details = check_classifier_savedmodel(version_dir, spec, reference_model=reference_model)
    for detail in details:
        passed(version_dir / SAVEDMODEL_DIRNAME, detail)
    if with_onnx:
        details = prechecked.get(onnx_precheck_key(spec.name))
        if details is None:
            details = check_classifier_onnx(version_dir, spec, reference_model=reference_model)
        for detail in details:
            passed(version_dir / ONNX_FILENAME, detail)

    prep_dir = repo / preprocess_name(spec)
    prep_version_dir = prep_dir / str(version)
    if not prep_version_dir.is_dir():
        raise VerificationError(
            f"no decoder version {prep_version_dir}; export writes it with the classifier"
        )
    _check_checksums(prep_version_dir, passed)
    prep_signature = read_signature(prep_version_dir / SAVEDMODEL_DIRNAME)
    for kind in kinds:
        path = config_path(prep_dir, kind)
        passed(path, check_preprocess_config(path, kind, spec, prep_signature))
    details = prechecked.get(prep_dir.name)
    if details is None:
        details = check_preprocess_savedmodel(prep_version_dir, spec)
    for detail in details:
        passed(prep_version_dir / SAVEDMODEL_DIRNAME, detail)
    if with_onnx:
        # The ONNX configs' decoder, with the cap their max_pixels parameter
        # gives it (checked above to be the spec's).
        for detail in check_pillow_decoder(prep_version_dir, spec, max_pixels=spec.max_pixels):
            passed(prep_version_dir, detail)

    ens_dir = repo / spec.encoded_name
    passed(ens_dir / "config.pbtxt", check_ensemble(ens_dir, model_dir, prep_dir, spec))

    explain_version_dir = repo / spec.explain_name / str(version)
    if not explain_version_dir.is_dir():
        raise VerificationError(
            f"no Grad-CAM model version {explain_version_dir}; export writes it with the "
            "classifier (re-export with medserve export)"
        )
    _check_checksums(explain_version_dir, passed)
    explain_signature = read_signature(explain_version_dir / SAVEDMODEL_DIRNAME)
    for kind in EXPLAIN_CONFIG_KINDS:
        path = config_path(explain_version_dir.parent, kind)
        classifier = config_path(model_dir, kind)
        passed(path, check_explain_config(path, kind, spec, explain_signature, classifier))
    details = prechecked.get(spec.explain_name)
    if details is None:
        details = check_explain_savedmodel(explain_version_dir, spec)
    for detail in details:
        passed(explain_version_dir / SAVEDMODEL_DIRNAME, detail)
    # Last: a stale rendering is worth reporting only once the artifacts are sound.
    _check_card_markdown(version_dir, passed)
    return report


def onnx_precheck_key(model_name: str) -> str:
    """Key of the exporter's ONNX check results in ``prechecked``."""
    return f"{model_name}/{ONNX_FILENAME}"


def _check_no_stray_onnx_configs(model_dir: Path, version_dir: Path, with_onnx: bool) -> None:
    """An ONNX config without ``model.onnx`` would fail to load in Triton."""
    if with_onnx:
        return
    for kind in ONNX_KINDS:
        path = config_path(model_dir, kind)
        if path.exists():
            raise VerificationError(
                f"{path} serves {ONNX_FILENAME}, but {version_dir} has none; re-export with "
                "--formats savedmodel,onnx or delete the ONNX configs"
            )


def check_classifier_savedmodel(
    version_dir: Path, spec: ModelSpec, *, reference_model: keras.Model | None = None
) -> list[str]:
    """Run the recorded batch through both loaders and compare with the recording.

    Raises:
        VerificationError: A loader fails or an output differs by more than 1e-5.
    """
    import numpy as np

    path = version_dir / SAVEDMODEL_DIRNAME
    images, expected = _read_expected_io(version_dir, spec)
    feeds = {spec.input_name: images}
    eager = run_eager(path, feeds)
    session = run_session(path, feeds)
    results = {"tf.saved_model.load": eager, "TF1 session loader": session}
    checks = []
    for loader, outputs in results.items():
        if spec.output_name not in outputs:
            raise VerificationError(
                f"{path}: {loader} returned {sorted(outputs)}, not {spec.output_name!r}"
            )
        got = np.asarray(outputs[spec.output_name])
        _compare(got, expected, f"{path}: {loader} output vs recorded output")
        checks.append(f"{loader}: max |diff| {_max_diff(got, expected):.1e} <= {TOLERANCE}")
    if reference_model is not None:
        keras_out = np.asarray(
            reference_model(images.astype(np.float32) / np.float32(255.0), training=False)
        )
        _compare(keras_out, expected, f"{path}: Keras model output vs recorded output")
        for loader, outputs in results.items():
            diff = _max_diff(np.asarray(outputs[spec.output_name]), keras_out)
            checks.append(f"{loader} vs Keras model: max |diff| {diff:.1e}")
    return checks


def check_preprocess_savedmodel(version_dir: Path, spec: ModelSpec) -> list[str]:
    """Decode PNG (RGB and grey) and JPEG through both loaders; reject a corrupt image.

    Raises:
        VerificationError: A loader fails, a shape is wrong, or the loaders disagree.
    """
    import numpy as np

    path = version_dir / SAVEDMODEL_DIRNAME
    exact, encoded = _sample_images(spec)
    feeds = {spec.encoded_input_name: np.array([[item] for item in encoded], dtype=object)}
    eager = np.asarray(run_eager(path, feeds)[spec.input_name])
    session = np.asarray(run_session(path, feeds)[spec.input_name])
    shape = (len(encoded), *spec.input_shape)
    if eager.shape != shape or eager.dtype != np.uint8:
        raise VerificationError(
            f"{path}: decoded batch is {eager.dtype} {eager.shape}, expected uint8 {shape}"
        )
    if not np.array_equal(eager, session):
        raise VerificationError(f"{path}: tf.saved_model.load and the TF1 session disagree")
    if not np.array_equal(eager[0], exact):
        raise VerificationError(f"{path}: a PNG of the served size did not decode losslessly")
    if not (np.array_equal(eager[1][..., 0], eager[1][..., 1])):
        raise VerificationError(f"{path}: a greyscale PNG did not become grey RGB")
    try:
        run_eager(path, {spec.encoded_input_name: np.array([[b"not an image"]], dtype=object)})
    except VerificationError:
        pass
    else:
        raise VerificationError(f"{path}: corrupt bytes decoded without an error")
    return [
        f"PNG (RGB, grey) and JPEG -> uint8 {shape[1:]} via both loaders",
        "corrupt bytes raise an error (one failed request on the server)",
        _check_pixel_cap(path, spec),
    ]


def _check_pixel_cap(path: Path, spec: ModelSpec) -> str:
    """Both loaders refuse an image one pixel above ``spec.max_pixels``, from its header."""
    import numpy as np

    header = png_header(spec.max_pixels + 1, 1)
    feeds = {spec.encoded_input_name: np.array([[header]], dtype=object)}
    for run in (run_eager, run_session):
        try:
            run(path, feeds)
        except VerificationError as exc:
            if REFUSAL_TEXT not in str(exc) or f"= {spec.max_pixels}," not in str(exc):
                raise VerificationError(
                    f"{path}: an image of {spec.max_pixels + 1} pixels failed, but not with "
                    f"the pixel cap of the spec ({spec.max_pixels}): {exc}"
                ) from exc
        else:
            raise VerificationError(
                f"{path}: an image of {spec.max_pixels + 1} pixels was not refused: the "
                "decoder has no pixel cap; export the model again"
            )
    return f"pixel cap {spec.max_pixels} in the graph: a larger image is refused from its header"


def _read_spec(model_dir: Path, model_name: str) -> ModelSpec:
    try:
        spec = ModelSpec.read(model_dir / SPEC_FILENAME)
    except MedServeError as exc:
        raise VerificationError(f"{model_dir / SPEC_FILENAME}: {exc}") from exc
    if spec.name != model_name:
        raise VerificationError(
            f"{model_dir / SPEC_FILENAME} names model {spec.name!r}, not {model_name!r}"
        )
    return spec


def _read_labels(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise VerificationError(f"cannot read labels {path}: {exc.strerror}") from exc


def _check_checksums(version_dir: Path, passed: Callable[[Path, str], None]) -> None:
    """Every file listed in the card has its sha256; no file is missing or extra."""
    card = read_model_card(version_dir)
    recorded: dict[str, str] = card["files"]
    actual = file_checksums(version_dir, exclude=CARD_FILES)
    for name, digest in recorded.items():
        if name not in actual:
            raise VerificationError(f"{version_dir / name} is listed in the model card but missing")
        if actual[name] != digest:
            raise VerificationError(
                f"{version_dir / name} does not match its sha256 in {MODEL_CARD_FILENAME} "
                "(modified or truncated after export); re-export this version"
            )
    extra = sorted(set(actual) - set(recorded))
    if extra:
        raise VerificationError(
            f"{version_dir} holds files the model card does not list: {', '.join(extra)}"
        )
    passed(version_dir / MODEL_CARD_FILENAME, f"sha256 of {len(recorded)} files match")


def _check_card_markdown(version_dir: Path, passed: Callable[[Path, str], None]) -> None:
    """``model_card.md``, when present, is the current rendering of ``model_card.json``."""
    path = version_dir / MODEL_CARD_MARKDOWN_FILENAME
    if not path.is_file():
        return
    if path.read_text(encoding="utf-8") != render_card_markdown(read_model_card(version_dir)):
        raise VerificationError(
            f"{path} does not match {MODEL_CARD_FILENAME} (edited, or the JSON card changed "
            f"since it was rendered); run `medserve card {version_dir.parent.parent} "
            f"--name {version_dir.parent.name} --version {version_dir.name}`"
        )
    passed(path, f"matches the rendering of {MODEL_CARD_FILENAME}")


def _read_expected_io(version_dir: Path, spec: ModelSpec) -> tuple[np.ndarray, np.ndarray]:
    import numpy as np

    path = version_dir / EXPECTED_IO_FILENAME
    try:
        with np.load(path, allow_pickle=False) as data:
            images, expected = data[spec.input_name], data[spec.output_name]
    except (OSError, KeyError, ValueError) as exc:
        raise VerificationError(f"cannot read the recorded batch {path}: {exc}") from exc
    if images.dtype != np.uint8 or images.shape[1:] != spec.input_shape:
        raise VerificationError(f"{path}: recorded images are {images.dtype} {images.shape}")
    if expected.shape != (len(images), spec.num_classes):
        raise VerificationError(
            f"{path}: recorded outputs have shape {expected.shape}, expected "
            f"({len(images)}, {spec.num_classes}) for {spec.num_classes} labels"
        )
    return images, expected


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    import numpy as np

    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))


def _compare(got: np.ndarray, expected: np.ndarray, what: str) -> None:
    if got.shape != expected.shape:
        raise VerificationError(f"{what}: shape {got.shape} != {expected.shape}")
    diff = _max_diff(got, expected)
    if not diff <= TOLERANCE:  # Also catches NaN.
        raise VerificationError(f"{what}: max |diff| {diff:.3g} exceeds {TOLERANCE}")


def _sample_images(spec: ModelSpec) -> tuple[np.ndarray, list[bytes]]:
    """An RGB PNG of the served size (decodes exactly), a grey PNG and a JPEG of other sizes."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(7)
    height, width = spec.image_size
    exact = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    grey = rng.integers(0, 256, size=(height + 7, 2 * width), dtype=np.uint8)
    colour = rng.integers(0, 256, size=(2 * height, width + 5, 3), dtype=np.uint8)
    encoded = []
    for array, fmt in ((exact, "PNG"), (grey, "PNG"), (colour, "JPEG")):
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format=fmt)
        encoded.append(buffer.getvalue())
    return exact, encoded
