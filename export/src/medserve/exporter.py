"""Turn a Keras classifier into a verified Triton model repository.

Usage::

    spec = ModelSpec(name="medcnn", labels=("normal", "lesion"), image_size=(224, 224))
    result = export_model(model, Path("model_repository"), spec)
    print(result.version, result.version_dir)

One export writes three models that share a version number where they have
versions (see ``model_repository/README.md``)::

    <repo>/<name>/             classifier: config.pbtxt, configs/{cpu,local,onnx-gpu,
                               onnx-cpu}.pbtxt, labels.txt, medserve_spec.json,
                               <v>/{model.savedmodel, model.onnx, model.py,
                               expected_io.npz, model_card.json}
    <repo>/<name>_preprocess/  decode + resize, no weights, same layout, plus the
                               Pillow decoder decode_pillow.py for the ONNX configs
    <repo>/<name>_encoded/     ensemble: image_bytes -> preprocess -> classifier
    <repo>/<name>_explain/     Grad-CAM: image, class_index -> probabilities, heatmap
                               (same configs; see medserve.explain.artifact)

``formats`` chooses the classifier artifacts: the SavedModel always (it is
``config.pbtxt``'s), ``model.onnx`` unless the user asks for the SavedModel
alone; the ONNX configs are written only with ``model.onnx``.

Order of writes, so an interruption never leaves a version Triton would load
half-written: both version directories are built in hidden ``.tmp-*``
directories and their SavedModels are checked through both loaders there; then
they are renamed into place; then the top-level files (configs, labels, spec)
are replaced atomically; then the whole repository is verified (reusing the
loader results of the staged SavedModels, whose checksums it confirms).
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field, replace
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medserve.errors import MedServeError, UsageError
from medserve.explain.artifact import write_explain_version
from medserve.export_inputs import CARD_KEY as EXPORT_INPUTS_KEY
from medserve.model import check_classifier, model_image_size
from medserve.model_card import build_model_card, write_model_card
from medserve.model_card_render import EXPLANATION_KEY, write_card_markdown
from medserve.model_config import (
    EXPLAIN_CONFIG_KINDS,
    ONNX_KINDS,
    PILLOW_DECODER_FILENAME,
    ServingOptions,
    classifier_config,
    config_kinds,
    config_path,
    ensemble_config,
    explain_config,
    preprocess_config,
    preprocess_name,
    to_text,
)
from medserve.onnx_export import write_classifier_onnx
from medserve.reliability_plot import RELIABILITY_FILENAME, write_reliability_diagram
from medserve.repository import (
    choose_version,
    commit_directories,
    prepare_repository,
    staged_directory,
    write_text_atomic,
)
from medserve.savedmodel import write_classifier_savedmodel, write_preprocess_savedmodel
from medserve.spec import (
    LABELS_FILENAME,
    ONNX_FILENAME,
    SAVEDMODEL_DIRNAME,
    SPEC_FILENAME,
    ModelSpec,
)
from medserve.temperature import calibration_of, with_temperature
from medserve.verify import (
    EXPECTED_IO_FILENAME,
    VerifyReport,
    check_classifier_savedmodel,
    check_preprocess_savedmodel,
    onnx_precheck_key,
    verify_repository,
)
from medserve.verify_onnx import check_classifier_onnx

if TYPE_CHECKING:
    import keras
    import numpy as np

log = logging.getLogger(__name__)

# Size of the fixed batch whose outputs are recorded at export and re-checked
# by every verify (and by `make compat` under the serving image's TensorFlow).
EXPECTED_BATCH = 4
EXPECTED_SEED = 20240229
TEMPLATE_PACKAGE = "medserve.triton_backend"
TEMPLATE_FILENAME = "model.py"
FORMATS = ("savedmodel", "onnx")


@dataclass(frozen=True)
class ExportResult:
    """Where an export wrote the models and what verify said about them.

    Attributes:
        version: Version number written (the same for classifier and decoder).
        version_dir: ``<repo>/<name>/<version>``.
        model_dir: ``<repo>/<name>``.
        preprocess_dir: ``<repo>/<name>_preprocess``.
        ensemble_dir: ``<repo>/<name>_encoded``.
        explain_dir: ``<repo>/<name>_explain``.
        report: The verification that ran after the export.
    """

    version: int
    version_dir: Path
    model_dir: Path
    preprocess_dir: Path
    ensemble_dir: Path
    explain_dir: Path
    report: VerifyReport = field(repr=False)


def export_model(
    model: keras.Model,
    repo: Path,
    spec: ModelSpec,
    *,
    version: int | None = None,
    force: bool = False,
    training_summary: dict[str, Any] | None = None,
    options: ServingOptions | None = None,
    formats: tuple[str, ...] = FORMATS,
    explanation: dict[str, Any] | None = None,
    export_inputs: dict[str, Any] | None = None,
) -> ExportResult:
    """Export ``model`` into the Triton repository ``repo`` and verify it.

    Args:
        model: Keras classifier taking float32 images in [0, 1].
        repo: Repository directory (created if missing).
        spec: Model name, labels, input size and batching limit.
        version: Version to write; default the next free one.
        force: Replace ``version`` if it already exists.
        training_summary: ``training.json`` of the training run, for the card
            and the temperature applied in the graph (none: ``T = 1``).
        options: Batching, queue and TensorRT settings of the configs.
        formats: Classifier artifacts to write: ``"savedmodel"`` (required)
            and ``"onnx"``.
        explanation: ``medserve evaluate``'s figures (``explanation.json``) for
            the card; without them the card says "not measured".
        export_inputs: What the export was made from
            (:func:`medserve.export_inputs.export_inputs`), recorded in the
            card so that the same export again can be recognised and skipped.

    Raises:
        UsageError: The model does not fit ``spec``, cannot be converted to
            ONNX, ``repo`` is a file, ``formats`` is invalid, or ``version``
            exists and ``force`` is off.
        VerificationError: The written repository failed a check.
    """
    options = options or ServingOptions()
    with_onnx = check_formats(formats)
    if not with_onnx and options.local_runtime == "onnxruntime":
        options = replace(options, local_runtime="tensorflow")
    check_model_matches_spec(model, spec)
    calibration = calibration_of(training_summary)
    # Every artifact below (SavedModel, recorded outputs, the verifier's Keras
    # reference) is built from the calibrated model, so each runtime serves
    # calibrated probabilities.
    model = with_temperature(model, calibration["temperature"])
    options.batch_sizes_for(spec.max_batch_size)  # Fail on bad sizes before writing.
    repo = prepare_repository(repo)
    model_dir = repo / spec.name
    prep_dir = repo / preprocess_name(spec)
    ens_dir = repo / spec.encoded_name
    explain_dir = repo / spec.explain_name
    for path in (model_dir, prep_dir, ens_dir, explain_dir):
        if path.exists() and not path.is_dir():
            raise UsageError(f"{path} is a file; the repository needs a model directory there")
    number = choose_version([model_dir, prep_dir, explain_dir], version, force=force)
    template = _backend_template()
    expected_input = _fixed_batch(spec)

    with (
        staged_directory(model_dir) as cls_tmp,
        staged_directory(prep_dir) as prep_tmp,
        staged_directory(explain_dir) as explain_tmp,
    ):
        log.info("writing %s version %d", spec.name, number)
        write_classifier_savedmodel(model, cls_tmp / SAVEDMODEL_DIRNAME, spec)
        extra: dict[str, Any] = {
            "serving": _options_summary(options),
            "expected_io": EXPECTED_IO_FILENAME,
            "formats": [name for name in FORMATS if name in formats],
        }
        if export_inputs is not None:
            extra[EXPORT_INPUTS_KEY] = export_inputs
        if with_onnx:
            extra["onnx"] = write_classifier_onnx(model, cls_tmp / ONNX_FILENAME, spec)
        (cls_tmp / TEMPLATE_FILENAME).write_bytes(template)
        if calibration.get("reliability_bins"):
            write_reliability_diagram(cls_tmp / RELIABILITY_FILENAME, calibration)
        _write_expected_io(cls_tmp, spec, expected_input, _keras_outputs(model, expected_input))
        prechecked = {spec.name: check_classifier_savedmodel(cls_tmp, spec, reference_model=model)}
        if with_onnx:
            prechecked[onnx_precheck_key(spec.name)] = check_classifier_onnx(
                cls_tmp, spec, reference_model=model, recorded_opset=extra["onnx"]["opset"]
            )
        write_model_card(
            cls_tmp,
            build_model_card(
                model,
                spec,
                version=number,
                role="classifier",
                training_summary=training_summary,
                extra={**extra, "calibration": calibration, EXPLANATION_KEY: explanation},
            ),
        )
        write_card_markdown(cls_tmp)

        log.info("writing %s version %d", preprocess_name(spec), number)
        write_preprocess_savedmodel(prep_tmp / SAVEDMODEL_DIRNAME, spec)
        (prep_tmp / TEMPLATE_FILENAME).write_bytes(template)
        (prep_tmp / PILLOW_DECODER_FILENAME).write_bytes(_backend_file(PILLOW_DECODER_FILENAME))
        prechecked[prep_dir.name] = check_preprocess_savedmodel(prep_tmp, spec)
        write_model_card(prep_tmp, build_model_card(None, spec, version=number, role="preprocess"))

        log.info("writing %s version %d", spec.explain_name, number)
        prechecked[spec.explain_name] = write_explain_version(
            model, explain_tmp, spec, version=number, template=template, images=expected_input
        )

        commit_directories(
            [
                (cls_tmp, model_dir / str(number)),
                (prep_tmp, prep_dir / str(number)),
                (explain_tmp, explain_dir / str(number)),
            ],
            force=force,
        )

    _write_top_level(spec, options, model_dir, prep_dir, ens_dir, explain_dir, with_onnx=with_onnx)
    report = verify_repository(
        repo, model_name=spec.name, version=number, reference_model=model, prechecked=prechecked
    )
    return ExportResult(
        version=number,
        version_dir=model_dir / str(number),
        model_dir=model_dir,
        preprocess_dir=prep_dir,
        ensemble_dir=ens_dir,
        explain_dir=explain_dir,
        report=report,
    )


def check_model_matches_spec(model: keras.Model, spec: ModelSpec) -> None:
    """Check that ``model`` is a classifier with the spec's input size and class count.

    Raises:
        UsageError: naming the mismatch and the flag that fixes it.
    """
    check_classifier(model)
    height, width = model_image_size(model)
    if (height, width) != spec.image_size:
        raise UsageError(
            f"the model takes {height}x{width} images but the spec says "
            f"{spec.image_size[0]}x{spec.image_size[1]}"
        )
    width_out = int(model.outputs[0].shape[-1])
    if width_out != spec.num_classes:
        raise UsageError(
            f"{spec.num_classes} labels given ({', '.join(spec.labels)}) but the model outputs "
            f"{width_out} classes; pass exactly {width_out} labels with --labels or --labels-file"
        )


def check_formats(formats: tuple[str, ...]) -> bool:
    """Check the requested artifacts; return whether ``model.onnx`` is among them.

    Raises:
        UsageError: An unknown format, or no SavedModel (``config.pbtxt`` serves it).
    """
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise UsageError(
            f"unknown export format(s) {', '.join(unknown)}; choose from {', '.join(FORMATS)}"
        )
    if "savedmodel" not in formats:
        raise UsageError(
            "--formats must include savedmodel: config.pbtxt (Triton's TensorFlow backend) "
            "and the local TensorFlow runtime serve it"
        )
    return "onnx" in formats


def _write_top_level(
    spec: ModelSpec,
    options: ServingOptions,
    model_dir: Path,
    prep_dir: Path,
    ens_dir: Path,
    explain_dir: Path,
    *,
    with_onnx: bool,
) -> None:
    """Replace configs, labels and spec of the four models, each atomically.

    Without ``model.onnx`` the ONNX configs of an earlier export are removed:
    they would point Triton at a version that has no ONNX file.
    """
    labels = "".join(f"{label}\n" for label in spec.labels)
    if not with_onnx:
        for kind in ONNX_KINDS:
            config_path(model_dir, kind).unlink(missing_ok=True)
            config_path(prep_dir, kind).unlink(missing_ok=True)
    for kind in config_kinds(onnx=with_onnx):
        write_text_atomic(
            config_path(model_dir, kind), to_text(classifier_config(spec, kind, options))
        )
        write_text_atomic(
            config_path(prep_dir, kind), to_text(preprocess_config(spec, kind, options))
        )
    for kind in EXPLAIN_CONFIG_KINDS:
        write_text_atomic(
            config_path(explain_dir, kind), to_text(explain_config(spec, kind, options))
        )
    write_text_atomic(model_dir / LABELS_FILENAME, labels)
    write_text_atomic(model_dir / SPEC_FILENAME, spec.to_json())
    write_text_atomic(ens_dir / "config.pbtxt", to_text(ensemble_config(spec)))
    write_text_atomic(ens_dir / LABELS_FILENAME, labels)
    write_text_atomic(explain_dir / LABELS_FILENAME, labels)
    # An ensemble has no model files, but Triton still wants a version directory.
    (ens_dir / "1").mkdir(parents=True, exist_ok=True)


def _backend_template() -> bytes:
    """The Python-backend ``model.py`` shipped in ``medserve.triton_backend``."""
    return _backend_file(TEMPLATE_FILENAME)


def _backend_file(name: str) -> bytes:
    """A Python-backend model file shipped in ``medserve.triton_backend``."""
    try:
        return (files(TEMPLATE_PACKAGE) / name).read_bytes()
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        raise MedServeError(
            f"the Python-backend file {TEMPLATE_PACKAGE}/{name} is missing "
            "from the installed medserve package; reinstall it with `make venv`"
        ) from exc


def _fixed_batch(spec: ModelSpec) -> np.ndarray:
    """A seeded uint8 batch: smooth gradients plus noise, like an image, not all one value."""
    import numpy as np

    rng = np.random.default_rng(EXPECTED_SEED)
    height, width, channels = spec.input_shape
    ramp = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    base = np.broadcast_to(ramp, (height, width, channels))
    batch = base[None] * rng.uniform(0.3, 1.0, size=(EXPECTED_BATCH, 1, 1, channels))
    batch = batch + rng.normal(0, 25, size=(EXPECTED_BATCH, height, width, channels))
    return np.clip(np.round(batch), 0, 255).astype(np.uint8)


def _keras_outputs(model: keras.Model, images: np.ndarray) -> np.ndarray:
    """The Keras model's probabilities for uint8 ``images`` (scaled as in the graph)."""
    import numpy as np

    scaled = images.astype(np.float32) / np.float32(255.0)
    return np.asarray(model(scaled, training=False), dtype=np.float32)


def _write_expected_io(
    version_dir: Path, spec: ModelSpec, images: np.ndarray, probabilities: np.ndarray
) -> None:
    """Record the fixed batch and the Keras outputs for later verification."""
    import numpy as np

    buffer = io.BytesIO()
    np.savez(buffer, **{spec.input_name: images, spec.output_name: probabilities})
    (version_dir / EXPECTED_IO_FILENAME).write_bytes(buffer.getvalue())


def _options_summary(options: ServingOptions) -> dict[str, Any]:
    """The serving options as plain JSON values for the model card."""
    from dataclasses import asdict

    summary = asdict(options)
    summary["preferred_batch_sizes"] = list(options.preferred_batch_sizes)
    summary["local_preferred_batch_sizes"] = list(options.local_preferred_batch_sizes)
    return summary
