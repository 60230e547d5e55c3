"""Grad-CAM of a Keras classifier: one implementation for in-process use and the served graph.

Usage::

    parts = gradcam_parts(model)                           # once per model
    probabilities, heatmaps = explain_images(parts, images_uint8, class_index=-1)

    # inside an exported tf.function (see medserve.explain.savedmodel):
    probabilities, heatmaps = gradcam_tensors(parts, scaled_float_images, class_index)

Grad-CAM (Selvaraju et al. 2017) weighs the last feature maps of the network
by the gradient of the class score with respect to them and sums over the
channels, through a ReLU. Three choices, measured on held-out synthetic
lesions (pointing game at a 4-pixel margin; 40 scans with the small 64x64
CNN of the unit tests, 30 with the 224x224 demo model, 2026-11-28):

- **The maps the head reads**: the last layer with a 4-D output (the last
  pooling layer of the reference CNN, after the last convolution). There,
  gradient times activation is each position's exact share of the logit;
  one layer earlier the max-pooling thins the gradient to one position in
  four, which shows as a dotted heatmap.
- **Element-wise weights** (the HiResCAM form, Draelos & Carin 2020): each
  map position is weighted by its own gradient, not by the gradient averaged
  over space as in the original paper. The reference CNN ends in Flatten +
  Dense, which learns a weight per position, and averaging cancels them:
  averaged weights scored 0/40 (small CNN) and 4/30 (demo model), element-wise
  weights 36/40 and 30/30. For a network that ends in global average pooling
  the two forms are the same.
- **Contrastive score**: the class logit minus the mean logit. Softmax only
  sees logit differences, so the part of a logit shared by all classes is no
  evidence for any of them (plain logit: 31/40 and 26/30). Logits, not
  probabilities: gradients of a saturated softmax vanish, and a temperature
  on the probabilities changes only the heatmap's scale, which the
  normalisation removes.

Every heatmap is bilinearly resized to the input's height and width (so it
lines up with the pixels the client sent) and divided by its maximum, so it
lies in [0, 1]; an all-negative map (nothing supports the class) is all zeros.

``class_index`` is one int per image: ``-1`` explains the predicted class,
``0..C-1`` a named one. Batched images never mix: there is no batch
normalisation at inference, so the gradient of the summed scores with respect
to image i's feature maps is the gradient of image i's own score.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from medserve.errors import UsageError
from medserve_client.contract import PREDICTED_CLASS

if TYPE_CHECKING:
    import keras
    import numpy as np
    import tensorflow as tf

# Added to the maximum before dividing, so an all-zero map stays zero (not NaN).
_EPSILON = 1e-12


@dataclass(frozen=True)
class GradcamParts:
    """What Grad-CAM needs from a classifier, built once by :func:`gradcam_parts`.

    Attributes:
        model: The classifier (float32 images in [0, 1] -> probabilities).
        features: A model from the same input to ``[last conv maps, head input,
            probabilities]``, sharing the classifier's weights.
        head: The last layer, whose pre-activation output is the class score.
        feature_layer: Name of the layer whose 4-D output Grad-CAM weighs.
    """

    model: Any
    features: Any
    head: Any
    feature_layer: str

    @property
    def num_classes(self) -> int:
        """Width of the probability output."""
        return int(self.model.outputs[0].shape[-1])

    @property
    def image_size(self) -> tuple[int, int]:
        """``(height, width)`` of the model input (and of every heatmap)."""
        shape = self.model.inputs[0].shape
        return (int(shape[1]), int(shape[2]))


def last_feature_layer(model: keras.Model) -> Any:
    """The last layer with a 4-D output: the feature maps Grad-CAM weighs.

    For the reference CNN that is the last pooling layer, after the last
    convolution: the dense head reads exactly these maps, so gradient times
    activation there is each position's exact share of the logit, and the
    gradient is not thinned to one position in four by the max-pooling.

    Raises:
        UsageError: The model has no 4-D feature map.
    """
    for layer in reversed(model.layers):
        output = getattr(layer, "output", None)
        if output is not None and len(output.shape) == 4 and layer is not model.layers[0]:
            return layer
    raise UsageError(
        f"model {model.name!r} has no layer with a 4-D output; Grad-CAM explains "
        "convolutional networks only"
    )


def last_conv_layer(model: keras.Model) -> Any:
    """The last layer whose output is a 4-D feature map with weights (a convolution).

    Raises:
        UsageError: The model has no convolution layer, so Grad-CAM cannot explain it.
    """
    for layer in reversed(model.layers):
        output = getattr(layer, "output", None)
        if output is not None and len(output.shape) == 4 and layer.weights:
            return layer
    raise UsageError(
        f"model {model.name!r} has no convolution layer with a 4-D output; Grad-CAM "
        "explains convolutional networks only"
    )


def gradcam_parts(model: keras.Model) -> GradcamParts:
    """Split ``model`` into the pieces Grad-CAM needs (weights shared, nothing copied).

    Raises:
        UsageError: No convolution layer, or a last layer that is neither a
            Dense layer nor an activation over the logits.
    """
    import keras

    conv = last_feature_layer(model)
    last_conv_layer(model)  # A network without convolutions is refused with a clear message.
    # The exported model may end in the calibration's temperature layer: the
    # logits are those of the layer before it, the probabilities the model's
    # (calibrated) output.
    head = _head_layer(model)
    features = keras.Model(
        model.inputs, [conv.output, head.input, model.outputs[0]], name=f"{model.name}_gradcam"
    )
    return GradcamParts(model=model, features=features, head=head, feature_layer=conv.name)


def _head_layer(model: keras.Model) -> Any:
    """The layer whose pre-activation output is the class score.

    The last Dense (or Activation/Softmax) layer, looking through weightless
    layers appended after it: a temperature scaling of the probabilities
    rescales the logits only, which the normalised heatmap ignores.

    Raises:
        UsageError: No such layer, or a layer with weights after it.
    """
    import keras

    heads = (keras.layers.Dense, keras.layers.Activation, keras.layers.Softmax)
    for layer in reversed(model.layers):
        if isinstance(layer, heads):
            return layer
        output = getattr(layer, "output", None)
        if layer.weights or output is None or len(output.shape) != 2:
            break
    raise UsageError(
        f"model {model.name!r} does not end in a Dense layer with a softmax activation (or an "
        "Activation layer over the logits), so Grad-CAM cannot find its class scores"
    )


def gradcam_tensors(
    parts: GradcamParts, images: tf.Tensor, class_index: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor]:
    """Probabilities and Grad-CAM heatmaps of float32 ``images`` in [0, 1].

    Graph-safe: this is the body of the exported endpoint as well as the
    in-process path, so the two agree by construction.

    Args:
        parts: From :func:`gradcam_parts`.
        images: ``float32 (N, H, W, 3)`` in [0, 1].
        class_index: ``int32 (N,)``: ``-1`` for the predicted class or a class index.

    Returns:
        ``(probabilities float32 (N, C), heatmaps float32 (N, H, W))``.
    """
    import tensorflow as tf

    num_classes = parts.num_classes
    height, width = parts.image_size
    class_index = tf.cast(tf.reshape(class_index, (-1,)), tf.int32)
    with tf.control_dependencies(
        [
            tf.debugging.assert_greater_equal(
                class_index,
                PREDICTED_CLASS,
                message=f"class_index must be -1 (predicted class) or 0..{num_classes - 1}",
            ),
            tf.debugging.assert_less(
                class_index,
                num_classes,
                message=f"class_index must be -1 (predicted class) or 0..{num_classes - 1}",
            ),
        ]
    ):
        class_index = tf.identity(class_index)
    with tf.GradientTape() as tape:
        maps, head_input, probabilities = parts.features(images, training=False)
        logits = _logits(parts.head, head_input)
        chosen = tf.where(
            class_index < 0, tf.argmax(probabilities, axis=-1, output_type=tf.int32), class_index
        )
        contrast = logits - tf.reduce_mean(logits, axis=-1, keepdims=True)
        score = tf.reduce_sum(contrast * tf.one_hot(chosen, num_classes, dtype=logits.dtype))
    gradients = tape.gradient(score, maps)
    cam = tf.nn.relu(tf.reduce_sum(gradients * maps, axis=-1, keepdims=True))
    cam = tf.image.resize(cam, (height, width), method="bilinear")[..., 0]
    peak = tf.reduce_max(cam, axis=(1, 2), keepdims=True)
    heatmaps = cam / (peak + _EPSILON)
    return tf.cast(probabilities, tf.float32), tf.cast(heatmaps, tf.float32)


def _logits(head: Any, head_input: tf.Tensor) -> tf.Tensor:
    """The class scores before the last activation."""
    import keras
    import tensorflow as tf

    if isinstance(head, keras.layers.Dense):
        logits = tf.matmul(head_input, head.kernel)
        return logits + head.bias if head.use_bias else logits
    return head_input  # An Activation/Softmax layer: its input is the logits.


def explain_images(
    parts: GradcamParts, images: np.ndarray, class_index: int | np.ndarray = PREDICTED_CLASS
) -> tuple[np.ndarray, np.ndarray]:
    """In-process Grad-CAM of uint8 images, scaled exactly as the served graph scales them.

    Args:
        parts: From :func:`gradcam_parts`.
        images: ``uint8 (N, H, W, 3)``.
        class_index: One index for all images or one per image (``-1``: predicted).

    Returns:
        ``(probabilities float32 (N, C), heatmaps float32 (N, H, W))``.

    Raises:
        UsageError: A class index outside ``-1..C-1``.
    """
    import numpy as np
    import tensorflow as tf

    batch = np.asarray(images)
    indices = np.broadcast_to(np.asarray(class_index, dtype=np.int32), (len(batch),))
    bad = indices[(indices < PREDICTED_CLASS) | (indices >= parts.num_classes)]
    if bad.size:
        raise UsageError(
            f"class index {int(bad[0])} does not exist: the model has {parts.num_classes} "
            f"classes (0..{parts.num_classes - 1}); use -1 for the predicted class"
        )
    probabilities, heatmaps = _graph(parts)(
        tf.constant(batch, dtype=tf.uint8), tf.constant(indices, dtype=tf.int32)
    )
    return np.asarray(probabilities), np.asarray(heatmaps)


# One traced graph per classifier. Run eagerly, the same ops differ from the
# exported graph by up to 4e-3 on a heatmap whose positive and negative
# channel contributions nearly cancel (measured on the 224x224 demo model;
# the served contract is 1e-4); traced, they match it exactly.
_GRAPHS: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def _graph(parts: GradcamParts) -> Any:
    """``uint8 images, class indices -> (probabilities, heatmaps)`` as a ``tf.function``."""
    import tensorflow as tf

    graph = _GRAPHS.get(parts.features)
    if graph is None:
        height, width = parts.image_size

        @tf.function(
            input_signature=[
                tf.TensorSpec((None, height, width, 3), tf.uint8),
                tf.TensorSpec((None,), tf.int32),
            ]
        )
        def graph(images: tf.Tensor, class_index: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            # The cast and scaling of the served graph.
            return gradcam_tensors(parts, tf.cast(images, tf.float32) / 255.0, class_index)

        _GRAPHS[parts.features] = graph
    return graph
