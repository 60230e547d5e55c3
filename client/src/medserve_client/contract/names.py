"""Tensor names and model-name suffixes of a repository written by ``medserve export``.

Usage::

    from medserve_client.contract import INPUT_NAME, encoded_model

    encoded_model("medcnn")      # "medcnn_encoded": the ensemble that takes file bytes

Callers that talk to a live server read the names from its metadata
(:mod:`.metadata`); these constants are what the exporter writes and what
code without a server (configs, fakes, warm-up files) needs.
"""

from __future__ import annotations

INPUT_NAME = "image"
"""The classifier's input: ``UINT8 [H, W, 3]`` per item (scaling happens in the graph)."""

ENCODED_INPUT_NAME = "image_bytes"
"""The input of the encoded entry points: one encoded PNG/JPEG file per item (``BYTES [1]``)."""

OUTPUT_NAME = "probabilities"
"""The classifier's output: ``FP32 [classes]``, with the label file attached."""

ENCODED_SUFFIX = "_encoded"
"""``<model>_encoded``: the ensemble bytes -> decode -> classifier."""

PREPROCESS_SUFFIX = "_preprocess"
"""``<model>_preprocess``: the server-side decoder the ensemble calls first."""

ADMIN_KEY_HEADER = "medserve-admin-key"
"""Header of the admin key (``--http-restricted-api <apis>:medserve-admin-key=KEY``)."""

GRPC_RESTRICTED_PREFIX = "triton-grpc-protocol-"
"""Prefix Triton's gRPC server expects on a restricted protocol's metadata key."""

MAX_PIXELS_PARAMETER = "max_pixels"
"""Config parameter of every server-side decoder: the largest image it decodes."""

EXPLAIN_SUFFIX = "_explain"
"""``<model>_explain``: probabilities and a Grad-CAM heatmap from the same weights."""

CLASS_INDEX_NAME = "class_index"
"""The explain model's second input: ``INT32 [1]`` per item, the class to explain."""

PREDICTED_CLASS = -1
"""``class_index`` sentinel: explain the class the model predicts for that image."""

HEATMAP_NAME = "heatmap"
"""The explain model's second output: ``FP32 [H, W]`` per item, in [0, 1], input-aligned."""


def encoded_model(model: str) -> str:
    """The name of ``model``'s encoded-bytes entry point."""
    return model + ENCODED_SUFFIX


def preprocess_model(model: str) -> str:
    """The name of ``model``'s server-side decoder."""
    return model + PREPROCESS_SUFFIX


def explain_model(model: str) -> str:
    """The name of ``model``'s Grad-CAM model."""
    return model + EXPLAIN_SUFFIX
