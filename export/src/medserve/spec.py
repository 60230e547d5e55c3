"""The one source of model-side facts: input size, tensor names, labels, batching.

Usage::

    spec = ModelSpec(name="medcnn", labels=("normal", "lesion"), image_size=(224, 224))
    spec.write(repo / spec.name / SPEC_FILENAME)
    same = ModelSpec.read(repo / spec.name / SPEC_FILENAME)

The exporter writes this spec into the model repository; the config builder,
the verifier and the local launcher read it. The client never reads it: it
learns the same facts from the server's metadata and config. Tensor names and
model-name suffixes are the served contract's (``medserve_client.contract``).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from medserve.errors import UsageError
from medserve_client.contract import (
    CLASS_INDEX_NAME,
    ENCODED_INPUT_NAME,
    HEATMAP_NAME,
    INPUT_NAME,
    OUTPUT_NAME,
    encoded_model,
    explain_model,
)

SPEC_FILENAME = "medserve_spec.json"
LABELS_FILENAME = "labels.txt"
SAVEDMODEL_DIRNAME = "model.savedmodel"
ONNX_FILENAME = "model.onnx"
# The statically quantized twin of model.onnx (medserve export --int8).
INT8_FILENAME = "model_int8.onnx"
MODEL_CARD_FILENAME = "model_card.json"
# Rendered from model_card.json (medserve card), so not in its checksum table.
MODEL_CARD_MARKDOWN_FILENAME = "model_card.md"

SIGNATURE_NAME = "serving_default"
# The largest image a server-side decoder accepts, in pixels (width x height).
# Real radiographs fit with room to spare: a 43x43 cm flat-panel chest detector
# at 100 um is ~4300x4300 (18.5 MP), digital mammography 3328x4096 (13.6 MP) to
# ~4700x5900 (28 MP, 50 um detectors), the "4000x5000 mammogram" 20 MP. Decoding
# costs about 3 bytes per pixel (uint8 RGB; the resize works from it), so one
# decode at the cap stays near 150 MB, while a bomb of 10000x10000 (a few
# hundred KB of PNG, 300 MB decoded) is refused from its header.
DEFAULT_MAX_PIXELS = 50_000_000

_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """What a served model takes and returns.

    Attributes:
        name: Triton model name of the classifier (the encoded entry point is
            ``contract.encoded_model(name)``).
        labels: Class names, in the order of the output vector.
        image_size: ``(height, width)`` of the served input.
        channels: Colour channels of the served input (always RGB: 3).
        max_batch_size: Largest batch Triton may form; dims exclude it.
        input_name: Name of the uint8 image input tensor.
        encoded_input_name: Name of the encoded-bytes input of the ensemble.
        output_name: Name of the probability output tensor.
        max_pixels: Largest image (width x height) the server-side decoders
            accept; larger ones are refused from their header, before decoding.
        class_index_name: Name of the explain model's class input (INT32,
            ``-1`` for the predicted class).
        heatmap_name: Name of the explain model's Grad-CAM output (FP32 ``[H, W]``).
    """

    name: str = "medcnn"
    labels: tuple[str, ...] = field(default=("normal", "lesion"))
    image_size: tuple[int, int] = (224, 224)
    channels: int = 3
    max_batch_size: int = 64
    input_name: str = INPUT_NAME
    encoded_input_name: str = ENCODED_INPUT_NAME
    output_name: str = OUTPUT_NAME
    max_pixels: int = DEFAULT_MAX_PIXELS
    class_index_name: str = CLASS_INDEX_NAME
    heatmap_name: str = HEATMAP_NAME

    def __post_init__(self) -> None:
        if not _MODEL_NAME.match(self.name):
            raise UsageError(
                f"model name {self.name!r} is not a valid Triton model name: "
                "use letters, digits, '_', '.' or '-'"
            )
        if len(self.labels) < 2:
            raise UsageError(f"a classifier needs at least 2 labels, got {len(self.labels)}")
        if len(set(self.labels)) != len(self.labels):
            raise UsageError("labels must be unique")
        for label in self.labels:
            if not label or "\n" in label:
                raise UsageError(f"label {label!r} must be non-empty and on one line")
        height, width = self.image_size
        if height < 8 or width < 8:
            raise UsageError(f"image_size {self.image_size} is too small: at least 8x8")
        if self.channels != 3:
            raise UsageError(f"channels must be 3 (RGB), got {self.channels}")
        if not self.image_size[0] * self.image_size[1] <= self.max_pixels < 2**31:
            raise UsageError(
                f"max_pixels must be at least the served image size and below 2^31, got "
                f"{self.max_pixels}"
            )
        if not 1 <= self.max_batch_size <= 1024:
            raise UsageError(f"max_batch_size must be in 1..1024, got {self.max_batch_size}")

    @property
    def num_classes(self) -> int:
        """Width of the probability output."""
        return len(self.labels)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(height, width, channels)`` of one served image, without the batch."""
        return (self.image_size[0], self.image_size[1], self.channels)

    @property
    def encoded_name(self) -> str:
        """Triton model name of the encoded-bytes entry point (the ensemble)."""
        return encoded_model(self.name)

    @property
    def explain_name(self) -> str:
        """Triton model name of the Grad-CAM model (probabilities + heatmap)."""
        return explain_model(self.name)

    def to_json(self) -> str:
        """Serialise to a stable, human-readable JSON document."""
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ModelSpec:
        """Parse a document written by :meth:`to_json`."""
        try:
            raw = json.loads(text)
            raw["labels"] = tuple(raw["labels"])
            raw["image_size"] = tuple(raw["image_size"])
            return cls(**raw)
        except (ValueError, KeyError, TypeError) as exc:
            raise UsageError(f"not a valid medserve model spec: {exc}") from exc

    def write(self, path: Path) -> None:
        """Write the spec as JSON to ``path``."""
        path.write_text(self.to_json(), encoding="utf-8")

    @classmethod
    def read(cls, path: Path) -> ModelSpec:
        """Read a spec written by :meth:`write`."""
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot read model spec {path}: {exc.strerror}") from exc
        return cls.from_json(text)
