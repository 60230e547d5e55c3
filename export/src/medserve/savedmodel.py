"""Write the two SavedModels of a repository: the classifier and the decoder.

Usage::

    write_classifier_savedmodel(model, version_dir / "model.savedmodel", spec)
    write_preprocess_savedmodel(prep_version_dir / "model.savedmodel", spec)

Both are written with ``keras.export.ExportArchive``, not ``tf.saved_model.save``:
a Keras 3 model saved through a bare ``tf.Module`` loads with
``tf.saved_model.load`` but fails the TF1 session loader that Triton's
TensorFlow backend uses ("Could not find variable ...", Triton issue #7456).

The classifier's ``serving_default`` takes ``image`` (uint8, ``[-1, H, W, 3]``),
casts and scales to float32 in [0, 1] (what the network was trained on) and
returns ``{"probabilities": float32 [-1, C]}``.

The preprocessing model's ``serving_default`` takes ``image_bytes`` (string,
``[-1, 1]``: one encoded PNG, JPEG, GIF or BMP per batch item) and returns
``{"image": uint8 [-1, H, W, 3]}``. Before decoding, ``medserve.decode_guard``
reads each image's size from its header and refuses one above
``spec.max_pixels`` (baked into the graph: Triton's TensorFlow backend cannot
hand config parameters to a signature). Decoding is ``tf.io.decode_image`` with
three channels (grey becomes RGB, alpha is dropped, 16-bit keeps the high
byte, only the first frame of a GIF); JPEGs go through ``tf.io.decode_jpeg``
with the accurate integer IDCT, the one Pillow uses. Resizing is bilinear
*with antialiasing*, then rounded and saturated to uint8: this matches
Pillow's ``Image.resize(size, Image.BILINEAR)``, which always filters over
the whole source footprint when downscaling. The bound between this decoder
and the pixel pipeline (:mod:`medserve_client.preprocessing`, used by the
client and by training) is documented there and tested in
``tests/unit/test_pixel_parity.py``. An
image that cannot be decoded makes the whole call fail with
``InvalidArgumentError``; the Triton config of this model has no dynamic
batching, so on the server that fails exactly one request.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medserve.decode_guard import guard_encoded_image
from medserve.spec import ModelSpec

if TYPE_CHECKING:
    import keras

log = logging.getLogger(__name__)


def write_classifier_savedmodel(model: keras.Model, path: Path, spec: ModelSpec) -> None:
    """Export ``model`` as a SavedModel that takes uint8 images.

    Args:
        model: A Keras classifier taking float32 images in [0, 1].
        path: Directory to create (``.../<version>/model.savedmodel``).
        spec: Input size and tensor names.
    """
    import keras
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    archive.track(model)
    output_name = spec.output_name

    def serve(image: tf.Tensor) -> dict[str, tf.Tensor]:
        # The scaling lives in the graph so no client can normalise differently
        # from training, and the wire carries uint8 (a quarter of float32).
        scaled = tf.cast(image, tf.float32) / 255.0
        probabilities = model(scaled, training=False)
        return {output_name: tf.identity(probabilities, name=output_name)}

    archive.add_endpoint(
        name="serving_default",
        fn=serve,
        input_signature=[
            tf.TensorSpec(shape=(None, *spec.input_shape), dtype=tf.uint8, name=spec.input_name)
        ],
    )
    write_archive(archive, path)


def write_preprocess_savedmodel(path: Path, spec: ModelSpec) -> None:
    """Export the decode-and-resize graph (no weights) as a SavedModel.

    Args:
        path: Directory to create (``.../<version>/model.savedmodel``).
        spec: Output size and tensor names (``encoded_input_name`` -> ``input_name``).
    """
    import keras
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    output_name = spec.input_name
    height, width = spec.image_size
    max_pixels = spec.max_pixels
    input_name = spec.encoded_input_name

    def decode_jpeg(encoded: tf.Tensor) -> tf.Tensor:
        # TensorFlow's default JPEG IDCT is libjpeg's fast integer one, up to
        # 11 grey levels away from the accurate one that Pillow (the client and
        # training pipeline, medserve_client.preprocessing) uses; this matches it.
        return tf.io.decode_jpeg(encoded, channels=3, dct_method="INTEGER_ACCURATE")

    def decode_other(encoded: tf.Tensor) -> tf.Tensor:
        return tf.io.decode_image(encoded, channels=3, expand_animations=False)

    def decode_one(encoded: tf.Tensor) -> tf.Tensor:
        checked = guard_encoded_image(encoded, max_pixels=max_pixels, input_name=input_name)
        image = tf.cond(
            tf.io.is_jpeg(checked), lambda: decode_jpeg(checked), lambda: decode_other(checked)
        )
        image = tf.ensure_shape(image, (None, None, 3))
        # Resized straight from uint8 (the op returns float32): a float32 copy
        # of a full-size image would cost 12 bytes per pixel, four times the
        # decoded image itself. The result is bit-identical either way.
        resized = tf.image.resize(image, (height, width), method="bilinear", antialias=True)
        return tf.saturate_cast(tf.round(resized), tf.uint8)

    def serve(image_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
        # Triton sends TYPE_STRING dims [1] as a [batch, 1] string tensor.
        flat = tf.reshape(image_bytes, (-1,))
        images = tf.map_fn(
            decode_one,
            flat,
            fn_output_signature=tf.TensorSpec((height, width, 3), tf.uint8),
        )
        return {output_name: tf.identity(images, name=output_name)}

    archive.add_endpoint(
        name="serving_default",
        fn=serve,
        input_signature=[
            tf.TensorSpec(shape=(None, 1), dtype=tf.string, name=spec.encoded_input_name)
        ],
    )
    write_archive(archive, path)


def write_archive(archive: Any, path: Path) -> None:
    """Write ``archive`` to ``path`` quietly (Keras prints a summary to stdout)."""
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()) as captured:
        archive.write_out(str(path), verbose=False)
    if captured.getvalue().strip():
        log.debug("%s", captured.getvalue().strip())
