"""The ``<name>_explain`` SavedModel: probabilities and a Grad-CAM heatmap, gradient in the graph.

Usage::

    write_explain_version(model, staged_dir, spec, version=3, template=model_py_bytes)
    details = check_explain_savedmodel(version_dir, spec)     # both loaders vs recording

The SavedModel is written with ``keras.export.ExportArchive`` like the
classifier, so it passes the TF1 session loader of Triton's TensorFlow
backend; the gradient (``tf.GradientTape`` in the endpoint) becomes ordinary
gradient ops of the serving graph. Its ``serving_default`` signature takes

- ``image``: ``uint8 [-1, H, W, 3]``, cast and scaled in the graph as in the
  classifier;
- ``class_index``: ``int32 [-1, 1]``, the class to explain, ``-1`` for the
  predicted one. A required input with a sentinel rather than a Triton
  ``optional`` input, because the TensorFlow backend feeds every signature
  input and a batch must have the same inputs in every request. Anything
  outside ``-1..C-1`` fails the request with "class_index must be ...".

and returns ``probabilities`` (``float32 [-1, C]``, the classifier's output)
and ``heatmap`` (``float32 [-1, H, W]``, in [0, 1], aligned with the input).

A fixed batch and its in-process (Keras) outputs are recorded in
``expected_io.npz``; ``medserve verify`` re-runs it through both loaders.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medserve.errors import VerificationError
from medserve.explain.gradcam import PREDICTED_CLASS, explain_images, gradcam_parts, gradcam_tensors
from medserve.loaders import run_eager, run_session
from medserve.model_card import build_model_card, write_model_card
from medserve.savedmodel import write_archive
from medserve.spec import SAVEDMODEL_DIRNAME, ModelSpec

if TYPE_CHECKING:
    import keras
    import numpy as np

EXPECTED_IO_FILENAME = "expected_io.npz"
TEMPLATE_FILENAME = "model.py"
# Heatmaps are a ratio to their own maximum, through a gradient: float32
# summation order differs between loaders by ~1e-6; the served contract is 1e-4.
HEATMAP_TOLERANCE = 1e-4
PROBABILITY_TOLERANCE = 1e-5


def write_explain_savedmodel(model: keras.Model, path: Path, spec: ModelSpec) -> None:
    """Export the Grad-CAM endpoint of ``model`` as a SavedModel at ``path``."""
    import keras
    import tensorflow as tf

    parts = gradcam_parts(model)
    archive = keras.export.ExportArchive()
    archive.track(parts.features)

    def serve(image: tf.Tensor, class_index: tf.Tensor) -> dict[str, tf.Tensor]:
        scaled = tf.cast(image, tf.float32) / 255.0
        probabilities, heatmap = gradcam_tensors(parts, scaled, class_index)
        return {
            spec.output_name: tf.identity(probabilities, name=spec.output_name),
            spec.heatmap_name: tf.identity(heatmap, name=spec.heatmap_name),
        }

    archive.add_endpoint(
        name="serving_default",
        fn=serve,
        input_signature=[
            tf.TensorSpec(shape=(None, *spec.input_shape), dtype=tf.uint8, name=spec.input_name),
            tf.TensorSpec(shape=(None, 1), dtype=tf.int32, name=spec.class_index_name),
        ],
    )
    write_archive(archive, path)


def write_explain_version(
    model: keras.Model,
    version_dir: Path,
    spec: ModelSpec,
    *,
    version: int,
    template: bytes,
    images: np.ndarray,
) -> list[str]:
    """Fill a (staged) version directory of ``<name>_explain`` and check it.

    Args:
        model: The Keras classifier.
        version_dir: The directory to fill (a hidden staging directory).
        spec: Names and sizes.
        version: The version number, for the card.
        template: The Python-backend ``model.py``.
        images: The fixed uint8 batch to record (the classifier's).

    Returns:
        The loader checks that passed, for the verify report.
    """
    import numpy as np

    write_explain_savedmodel(model, version_dir / SAVEDMODEL_DIRNAME, spec)
    (version_dir / TEMPLATE_FILENAME).write_bytes(template)
    # Half the rows explain the predicted class, the rest each class in turn.
    rows = range(len(images))
    indices = np.array(
        [PREDICTED_CLASS if row % 2 == 0 else (row // 2) % spec.num_classes for row in rows],
        dtype=np.int32,
    )
    probabilities, heatmaps = explain_images(gradcam_parts(model), images, indices)
    buffer = io.BytesIO()
    np.savez(
        buffer,
        **{
            spec.input_name: images,
            spec.class_index_name: indices[:, None],
            spec.output_name: probabilities,
            spec.heatmap_name: heatmaps,
        },
    )
    (version_dir / EXPECTED_IO_FILENAME).write_bytes(buffer.getvalue())
    details = check_explain_savedmodel(version_dir, spec)
    write_model_card(
        version_dir,
        build_model_card(
            model,
            spec,
            version=version,
            role="explain",
            extra={
                "explanation": {
                    "method": "Grad-CAM (Selvaraju et al. 2017)",
                    "layer": gradcam_parts(model).feature_layer,
                    "class_index": f"{spec.class_index_name}: -1 = predicted class",
                    "heatmap": f"{spec.heatmap_name}: FP32 {list(spec.image_size)}, in [0, 1]",
                    "use": "supportive only, not a diagnosis",
                },
                "expected_io": EXPECTED_IO_FILENAME,
            },
        ),
    )
    return details


def check_explain_savedmodel(version_dir: Path, spec: ModelSpec) -> list[str]:
    """Run the recorded batch through both loaders; compare with the in-process recording.

    Raises:
        VerificationError: A loader fails, an output is missing, or an output
            differs from the recording beyond its tolerance.
    """
    import numpy as np

    path = version_dir / SAVEDMODEL_DIRNAME
    recorded = _read_expected(version_dir, spec)
    feeds = {
        spec.input_name: recorded[spec.input_name],
        spec.class_index_name: recorded[spec.class_index_name],
    }
    details = []
    for loader, run in (("tf.saved_model.load", run_eager), ("TF1 session loader", run_session)):
        outputs = run(path, feeds)
        diffs = []
        for name, tolerance in (
            (spec.output_name, PROBABILITY_TOLERANCE),
            (spec.heatmap_name, HEATMAP_TOLERANCE),
        ):
            if name not in outputs:
                raise VerificationError(
                    f"{path}: {loader} returned {sorted(outputs)}, not {name!r}"
                )
            got, expected = np.asarray(outputs[name]), recorded[name]
            if got.shape != expected.shape:
                raise VerificationError(
                    f"{path}: {loader} output {name!r} has shape {got.shape}, expected "
                    f"{expected.shape}"
                )
            diff = float(np.max(np.abs(got.astype(np.float64) - expected)))
            if not diff <= tolerance:  # Also catches NaN.
                raise VerificationError(
                    f"{path}: {loader} output {name!r} differs from the in-process Grad-CAM "
                    f"by {diff:.3g} (> {tolerance})"
                )
            diffs.append(f"{name} max |diff| {diff:.1e} <= {tolerance}")
        details.append(f"{loader} vs in-process Grad-CAM: {', '.join(diffs)}")
    return details


def _read_expected(version_dir: Path, spec: ModelSpec) -> dict[str, Any]:
    import numpy as np

    path = version_dir / EXPECTED_IO_FILENAME
    names = (spec.input_name, spec.class_index_name, spec.output_name, spec.heatmap_name)
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in names}
    except (OSError, KeyError, ValueError) as exc:
        raise VerificationError(f"cannot read the recorded explain batch {path}: {exc}") from exc
