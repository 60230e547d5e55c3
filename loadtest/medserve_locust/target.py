"""What a load test calls: model, tensor names, image size and class count.

Usage::

    classifier = grpc_client.get_model_metadata("medcnn", as_json=True)
    target = InferTarget.from_metadata(classifier)                 # uint8 tensors
    encoded = InferTarget.from_metadata(classifier, entry=ensemble_metadata)

Nothing here is hard-coded: names and shapes come from the server's KServe v2
model metadata (the same JSON shape over HTTP and, with ``as_json=True``, gRPC,
where int64 dimensions arrive as strings).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class TargetError(Exception):
    """The served model does not look like a medserve image classifier."""


def _dims(tensor: Mapping[str, Any]) -> list[int]:
    return [int(d) for d in tensor.get("shape", [])]


@dataclass(frozen=True, kw_only=True)
class InferTarget:
    """One model entry point and the facts needed to build and judge requests.

    Attributes:
        model: Triton model the requests go to (the classifier or its ensemble).
        input_name: Its single input tensor.
        input_datatype: KServe datatype of that input (``UINT8``, ``FP32``, ``BYTES``).
        output_name: Probability output tensor.
        image_size: ``(height, width)`` of the classifier's input.
        num_classes: Width of the probability output.
    """

    model: str
    input_name: str
    input_datatype: str
    output_name: str
    image_size: tuple[int, int]
    num_classes: int

    @property
    def encoded(self) -> bool:
        """Whether the input takes encoded image bytes rather than a pixel tensor."""
        return self.input_datatype == "BYTES"

    @classmethod
    def from_metadata(
        cls, classifier: Mapping[str, Any], *, entry: Mapping[str, Any] | None = None
    ) -> InferTarget:
        """Build a target from model metadata.

        Args:
            classifier: Metadata of the classifier (input ``[-1, H, W, 3]``,
                output ``[-1, C]``).
            entry: Metadata of the model to call when it is not the classifier
                (the encoded-bytes ensemble); defaults to ``classifier``.

        Raises:
            TargetError: The shapes are not those of an image classifier.
        """
        entry = entry or classifier
        try:
            image_dims = _dims(classifier["inputs"][0])
            out_dims = _dims(entry["outputs"][0])
            entry_input = entry["inputs"][0]
            entry_output = entry["outputs"][0]
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise TargetError(f"unexpected model metadata: {exc!r}") from exc
        if len(image_dims) != 4 or image_dims[-1] != 3:
            raise TargetError(
                f"model {classifier.get('name')} input has shape {image_dims}; "
                "expected [-1, H, W, 3] (a batching image classifier)"
            )
        if len(out_dims) != 2 or out_dims[-1] < 2:
            raise TargetError(
                f"model {entry.get('name')} output has shape {out_dims}; expected [-1, classes]"
            )
        return cls(
            model=str(entry["name"]),
            input_name=str(entry_input["name"]),
            input_datatype=str(entry_input["datatype"]),
            output_name=str(entry_output["name"]),
            image_size=(image_dims[1], image_dims[2]),
            num_classes=out_dims[-1],
        )
