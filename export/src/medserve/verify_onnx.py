"""ONNX-side checks of ``medserve verify``: ``model.onnx``, ``model_int8.onnx``, the Pillow decoder.

Usage::

    details = check_classifier_onnx(version_dir, spec, reference_model=model)
    details = check_classifier_int8(version_dir, spec)     # against the card's "int8" section
    details = check_pillow_decoder(prep_version_dir, spec, max_pixels=spec.max_pixels)

Each returns one line per passed check and raises
:class:`~medserve.errors.VerificationError` naming the file at the first
problem. ``model.onnx`` must carry the opset recorded in the model card (and
one the serving onnxruntime runs), and give the outputs recorded at export
(``expected_io.npz``) within 1e-5 under onnxruntime. ``model_int8.onnx``
must carry the same opset and, on the same recorded batch, agree with the
recorded FP32 outputs at least as well as it did at export: the same top-1
agreement and a largest probability difference within the bound the card
records (the larger of the export's differences on that batch and on the
validation split), so an onnxruntime whose INT8 kernels compute differently
(say, a CPU without VNNI saturating) is caught. The Pillow decoder is the
very ``decode_pillow.py`` of the version, imported from its file: it must
decode a PNG of the served size losslessly, agree with the TensorFlow decoder
within :data:`PILLOW_TF_MAX_DIFF` grey levels, reject corrupt bytes and refuse
an image above its pixel cap before decoding it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medserve.errors import VerificationError
from medserve.model_card import read_model_card
from medserve.model_config import PILLOW_DECODER_FILENAME
from medserve.onnx_export import ONNX_OPSET
from medserve.onnx_loaders import onnx_opset, run_onnx
from medserve.spec import INT8_FILENAME, ONNX_FILENAME, SAVEDMODEL_DIRNAME, ModelSpec

if TYPE_CHECKING:
    import keras
    import numpy as np

# The newest opset the onnxruntime of Triton 26.08/26.09 (1.28) implements is
# far above this; the exporter writes ONNX_OPSET. A file stamped higher than
# this bound would not load on the image this repository targets.
MAX_SERVING_OPSET = 23
# Largest per-pixel difference, in grey levels, between the Pillow decoder and
# the TensorFlow decoder on the verify samples (resized PNG and JPEG): Pillow
# and TensorFlow resample with different arithmetic, and decode JPEG with
# different IDCTs. Measured maxima on 2026-11-28 were <= 3; a PNG of the
# served size is identical.
PILLOW_TF_MAX_DIFF = 4


def check_classifier_onnx(
    version_dir: Path,
    spec: ModelSpec,
    *,
    reference_model: keras.Model | None = None,
    recorded_opset: int | None = None,
) -> list[str]:
    """Check ``model.onnx``'s opset and its outputs on the recorded batch.

    Args:
        version_dir: The classifier version directory.
        spec: Tensor names and shapes.
        reference_model: The Keras model, when at hand (at export).
        recorded_opset: The opset the file must carry; default the model card's.

    Raises:
        VerificationError: Wrong opset, onnxruntime fails, or an output
            differs from the recording by more than 1e-5.
    """
    import numpy as np

    from medserve.verify import TOLERANCE, _compare, _max_diff, _read_expected_io

    path = version_dir / ONNX_FILENAME
    opset = onnx_opset(path)
    recorded = recorded_opset
    if recorded is None:
        recorded = (read_model_card(version_dir).get("onnx") or {}).get("opset", ONNX_OPSET)
    if opset != recorded or opset > MAX_SERVING_OPSET:
        raise VerificationError(
            f"{path} is stamped opset {opset}, but the model card records {recorded} "
            f"(the serving onnxruntime runs up to {MAX_SERVING_OPSET}); re-export this version"
        )
    images, expected = _read_expected_io(version_dir, spec)
    outputs = run_onnx(path, {spec.input_name: images})
    if spec.output_name not in outputs:
        raise VerificationError(
            f"{path}: onnxruntime returned {sorted(outputs)}, not {spec.output_name!r}"
        )
    got = np.asarray(outputs[spec.output_name])
    _compare(got, expected, f"{path}: onnxruntime output vs recorded output")
    checks = [
        f"opset {opset} (recorded in the model card)",
        f"onnxruntime: max |diff| {_max_diff(got, expected):.1e} <= {TOLERANCE}",
    ]
    if reference_model is not None:
        keras_out = np.asarray(
            reference_model(images.astype(np.float32) / np.float32(255.0), training=False)
        )
        checks.append(f"onnxruntime vs Keras model: max |diff| {_max_diff(got, keras_out):.1e}")
    return checks


def int8_expected_io(version_dir: Path, spec: ModelSpec, section: dict[str, Any]) -> dict[str, Any]:
    """``model_int8.onnx`` against the recorded FP32 outputs of ``expected_io.npz``, with its bound.

    Args:
        version_dir: The classifier version directory (staged, at export).
        spec: Tensor names and shapes.
        section: :func:`medserve.int8.write_int8_onnx`'s result (its validation figures).

    Returns:
        The card's ``int8.expected_io``: images, top-1 agreement, largest
        probability difference, and the bound verify holds later runs to.
    """
    from medserve.metrics import accuracy
    from medserve.verify import _max_diff, _read_expected_io

    images, expected = _read_expected_io(version_dir, spec)
    got = _int8_outputs(version_dir, spec, images)
    diff = _max_diff(got, expected)
    return {
        "images": len(images),
        "top1_agreement": accuracy(expected.argmax(axis=1), got),
        "max_abs_probability_diff": diff,
        "max_abs_probability_diff_bound": max(
            diff, float(section["agreement"]["max_abs_probability_diff"])
        ),
    }


def check_classifier_int8(
    version_dir: Path, spec: ModelSpec, *, recorded: dict[str, Any] | None = None
) -> list[str]:
    """Check ``model_int8.onnx``'s opset, the gate figures and its agreement on the recorded batch.

    Args:
        version_dir: The classifier version directory.
        spec: Tensor names and shapes.
        recorded: The card's ``int8`` section (default: read from the card).

    Raises:
        VerificationError: No ``int8`` section, another opset, figures outside
            the gate, or INT8 outputs further from FP32 than recorded.
    """
    from medserve.int8 import MAX_AUC_DROP, MIN_TOP1_AGREEMENT
    from medserve.metrics import accuracy
    from medserve.verify import _max_diff, _read_expected_io

    path = version_dir / INT8_FILENAME
    if recorded is None:
        recorded = read_model_card(version_dir).get("int8")
    try:
        figures, io_bounds = recorded["agreement"], recorded["expected_io"]  # type: ignore[index]
        opset_wanted = int(recorded["opset"])  # type: ignore[index]
    except (KeyError, TypeError, ValueError) as exc:
        raise VerificationError(
            f"{path}: the model card has no complete 'int8' section ({exc!r}); re-export this "
            "version with medserve export --int8"
        ) from exc
    opset = onnx_opset(path)
    if opset != opset_wanted or opset > MAX_SERVING_OPSET:
        raise VerificationError(
            f"{path} is stamped opset {opset}, but the model card records {opset_wanted} "
            f"(the serving onnxruntime runs up to {MAX_SERVING_OPSET}); re-export this version"
        )
    if not (
        figures["top1_agreement"] >= MIN_TOP1_AGREEMENT and figures["roc_auc_drop"] <= MAX_AUC_DROP
    ):
        raise VerificationError(
            f"{path}: the model card's INT8 figures are outside the gate (top-1 agreement "
            f"{figures['top1_agreement']}, ROC AUC drop {figures['roc_auc_drop']}); re-export"
        )
    images, expected = _read_expected_io(version_dir, spec)
    got = _int8_outputs(version_dir, spec, images)
    top1, diff = accuracy(expected.argmax(axis=1), got), _max_diff(got, expected)
    bound = float(io_bounds["max_abs_probability_diff_bound"])
    # Slack for float summation order between onnxruntime builds, far below any real change.
    if top1 < io_bounds["top1_agreement"] or not diff <= bound + 1e-6:
        raise VerificationError(
            f"{path}: on the recorded batch INT8 agrees with FP32 on {top1:.2%} of top-1 "
            f"decisions (recorded {io_bounds['top1_agreement']:.2%}) with a largest probability "
            f"difference of {diff:.4f} (bound {bound:.4f}); this onnxruntime computes the INT8 "
            "model differently from the export's: re-export on this machine, or serve model.onnx"
        )
    return [
        f"opset {opset} (recorded in the model card)",
        f"validation gate (recorded): top-1 agreement {figures['top1_agreement']:.4f} >= "
        f"{MIN_TOP1_AGREEMENT}, ROC AUC drop {figures['roc_auc_drop']:.4f} <= {MAX_AUC_DROP} "
        f"on {figures['validation_images']} images",
        f"onnxruntime vs recorded FP32 outputs: top-1 agreement {top1:.2%}, max |diff| "
        f"{diff:.1e} <= {bound:.1e}",
    ]


def _int8_outputs(version_dir: Path, spec: ModelSpec, images: np.ndarray) -> np.ndarray:
    import numpy as np

    path = version_dir / INT8_FILENAME
    outputs = run_onnx(path, {spec.input_name: images})
    if spec.output_name not in outputs:
        raise VerificationError(
            f"{path}: onnxruntime returned {sorted(outputs)}, not {spec.output_name!r}"
        )
    return np.asarray(outputs[spec.output_name])


def load_pillow_decoder(prep_version_dir: Path) -> Any:
    """Import the version's ``decode_pillow.py`` (the file Triton would run) as a module.

    Raises:
        VerificationError: The file is missing or does not import.
    """
    path = prep_version_dir / PILLOW_DECODER_FILENAME
    if not path.is_file():
        raise VerificationError(f"{path} is missing; the ONNX configs' decoder runs it")
    spec = importlib.util.spec_from_file_location(f"medserve_verify_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise VerificationError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # Any import-time failure makes the decoder unusable.
        raise VerificationError(f"{path} does not import: {type(exc).__name__}: {exc}") from exc
    return module


def check_pillow_decoder(prep_version_dir: Path, spec: ModelSpec, *, max_pixels: int) -> list[str]:
    """Decode the verify samples with Pillow and compare with the TensorFlow decoder.

    Raises:
        VerificationError: A shape is wrong, an output is off by more than the
            bound, corrupt bytes decode, or an over-cap image is not refused.
    """
    import numpy as np

    from medserve.loaders import run_eager
    from medserve.verify import _max_diff, _sample_images

    path = prep_version_dir / PILLOW_DECODER_FILENAME
    module = load_pillow_decoder(prep_version_dir)
    height, width = spec.image_size

    def decode(data: bytes, cap: int = max_pixels) -> np.ndarray:
        return np.asarray(module.decode(data, height=height, width=width, max_pixels=cap))

    exact, encoded = _sample_images(spec)
    try:
        pillow = np.stack([decode(item) for item in encoded])
    except module.DecodeError as exc:
        raise VerificationError(f"{path}: a verify sample failed to decode: {exc}") from exc
    if pillow.shape != (len(encoded), *spec.input_shape) or pillow.dtype != np.uint8:
        raise VerificationError(f"{path}: decoded {pillow.dtype} {pillow.shape}")
    if not np.array_equal(pillow[0], exact):
        raise VerificationError(f"{path}: a PNG of the served size did not decode losslessly")
    feeds = {spec.encoded_input_name: np.array([[item] for item in encoded], dtype=object)}
    tf_out = np.asarray(run_eager(prep_version_dir / SAVEDMODEL_DIRNAME, feeds)[spec.input_name])
    diff = _max_diff(pillow, tf_out)
    if diff > PILLOW_TF_MAX_DIFF:
        raise VerificationError(
            f"{path}: Pillow and TensorFlow decoders differ by {diff:.0f} grey levels "
            f"(bound {PILLOW_TF_MAX_DIFF})"
        )
    for bad, what in ((b"not an image", "corrupt bytes"), (encoded[0][:40], "a truncated PNG")):
        try:
            decode(bad)
        except module.DecodeError:
            continue
        raise VerificationError(f"{path}: {what} decoded without an error")
    try:
        decode(encoded[0], cap=height * width - 1)
    except module.DecodeError:
        pass
    else:
        raise VerificationError(f"{path}: an image above max_pixels was not refused")
    return [
        f"Pillow decoder: PNG exact, vs TensorFlow decoder max |diff| {diff:.0f} <= "
        f"{PILLOW_TF_MAX_DIFF} grey levels",
        "Pillow decoder: corrupt and truncated bytes raise; an image above max_pixels is refused",
    ]
