"""Reading a medserve model from Triton's KServe v2 metadata and model config.

Usage::

    info = model_info_from(metadata, config, labels=("normal", "lesion"), version=None)
    entry = encoded_entry_from(encoded_metadata, encoded_config)
    target = image_target_from(classifier_metadata, entry=encoded_metadata)  # metadata only

Both protocols give the same JSON shape (gRPC with ``as_json=True``), except
that gRPC writes int64 values (dimensions, counters) as strings: every number
goes through ``int``. Nothing here does I/O; callers pass what the server said.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from medserve_client._errors import InferenceError
from medserve_client._models import ModelInfo

BYTES = "BYTES"


def model_info_from(
    metadata: Mapping[str, Any],
    config: Mapping[str, Any],
    *,
    labels: Sequence[str] | None,
    version: str | None,
) -> ModelInfo:
    """Build :class:`~medserve_client.ModelInfo` from the server's model metadata and config.

    Args:
        metadata: KServe model metadata (gRPC JSON form has int64 as strings).
        config: Triton model config (JSON form).
        labels: Class names, when the server provides them; ``None`` names
            the classes by their index.
        version: The version the client pins, if any.

    Raises:
        InferenceError: The model is not a medserve image classifier.
    """
    name = str(metadata.get("name", config.get("name", "")))
    inputs, outputs = list(metadata.get("inputs", [])), list(metadata.get("outputs", []))
    if len(inputs) != 1 or not outputs:
        raise InferenceError(
            f"model {name!r} has {len(inputs)} inputs and {len(outputs)} outputs; a medserve "
            "classifier has exactly one image input and a probability output"
        )
    max_batch_size = int(config.get("max_batch_size", 0) or 0)
    image = inputs[0]
    shape = [int(dim) for dim in image.get("shape", [])]
    if max_batch_size > 0:
        shape = shape[1:]  # Dims exclude the batch dimension when batching is on.
    if len(shape) != 3 or shape[2] != 3 or min(shape) < 1:
        raise InferenceError(
            f"model {name!r} input {image.get('name')!r} has shape {shape}; expected [H, W, 3]"
        )
    output = _probability_output(outputs, config)
    out_shape = [int(dim) for dim in output.get("shape", [])]
    num_classes = out_shape[-1] if out_shape else 0
    if num_classes < 1:
        raise InferenceError(f"model {name!r} output {output.get('name')!r} has no class width")
    if labels is None:
        labels = tuple(str(index) for index in range(num_classes))
    if len(labels) != num_classes:
        raise InferenceError(
            f"model {name!r} lists {len(labels)} labels for {num_classes} outputs; check labels.txt"
        )
    versions = tuple(str(v) for v in metadata.get("versions", []))
    chosen = version or (max(versions, key=_version_key) if versions else "")
    return ModelInfo(
        name=name,
        version=chosen,
        versions=versions,
        platform=str(metadata.get("platform", "")),
        input_name=str(image["name"]),
        input_datatype=str(image.get("datatype", "")),
        input_shape=(shape[0], shape[1], shape[2]),
        output_name=str(output["name"]),
        labels=tuple(labels),
        max_batch_size=max_batch_size,
    )


def _probability_output(outputs: list[Any], config: Mapping[str, Any]) -> Mapping[str, Any]:
    """The output that carries labels in the config, else the only (or first) one."""
    labelled = {o.get("name") for o in config.get("output", []) if o.get("label_filename")}
    for output in outputs:
        if output.get("name") in labelled:
            return dict(output)
    return dict(outputs[0])


def has_labels(config: Mapping[str, Any], output_name: str) -> bool:
    """Whether the config attaches a ``label_filename`` to ``output_name``."""
    return any(
        o.get("name") == output_name and o.get("label_filename") for o in config.get("output", [])
    )


def _version_key(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (-1, version)


def parse_labels(classifications: npt.NDArray[Any], num_classes: int) -> tuple[str, ...]:
    """Labels from Triton's classification output (``"score:index:label"`` per class)."""
    by_index: dict[int, str] = {}
    for raw in np.asarray(classifications).reshape(-1):
        text = raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)
        parts = text.split(":", 2)
        if len(parts) != 3:
            raise InferenceError(f"unexpected classification entry {text!r} from the server")
        by_index[int(parts[1])] = parts[2]
    if sorted(by_index) != list(range(num_classes)):
        raise InferenceError(
            f"the server's classification output named {len(by_index)} of {num_classes} classes"
        )
    return tuple(by_index[index] for index in range(num_classes))


@dataclass(frozen=True)
class EncodedEntry:
    """The ``<model>_encoded`` entry point, as its metadata and config describe it."""

    name: str
    input_name: str
    output_name: str
    max_batch_size: int


def encoded_entry_from(metadata: Mapping[str, Any], config: Mapping[str, Any]) -> EncodedEntry:
    """Read the encoded entry point's tensor names and batch limit from the server."""
    name = str(metadata.get("name", ""))
    inputs, outputs = list(metadata.get("inputs", [])), list(metadata.get("outputs", []))
    if len(inputs) != 1 or inputs[0].get("datatype") != BYTES or not outputs:
        raise InferenceError(
            f"model {name!r} is not an encoded-bytes entry point (one BYTES input expected)"
        )
    return EncodedEntry(
        name=name,
        input_name=str(inputs[0]["name"]),
        output_name=str(outputs[0]["name"]),
        max_batch_size=int(config.get("max_batch_size", 0) or 0),
    )


@dataclass(frozen=True, kw_only=True)
class ImageTarget:
    """One batching entry point and the facts needed to build and judge raw requests.

    For callers that build tritonclient requests themselves (the load tests)
    and read only the metadata, not the config.

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
        return self.input_datatype == BYTES


def _dims(tensor: Mapping[str, Any]) -> list[int]:
    return [int(d) for d in tensor.get("shape", [])]


def image_target_from(
    classifier: Mapping[str, Any], *, entry: Mapping[str, Any] | None = None
) -> ImageTarget:
    """Build an :class:`ImageTarget` from the metadata of a batching classifier.

    Args:
        classifier: Metadata of the classifier (input ``[-1, H, W, 3]``,
            output ``[-1, C]``).
        entry: Metadata of the model to call when it is not the classifier
            (the encoded-bytes ensemble); defaults to ``classifier``.

    Raises:
        InferenceError: The shapes are not those of a batching image classifier.
    """
    entry = entry or classifier
    try:
        image_dims = _dims(classifier["inputs"][0])
        out_dims = _dims(entry["outputs"][0])
        entry_input = entry["inputs"][0]
        entry_output = entry["outputs"][0]
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise InferenceError(f"unexpected model metadata: {exc!r}") from exc
    if len(image_dims) != 4 or image_dims[-1] != 3:
        raise InferenceError(
            f"model {classifier.get('name')} input has shape {image_dims}; "
            "expected [-1, H, W, 3] (a batching image classifier)"
        )
    if len(out_dims) != 2 or out_dims[-1] < 2:
        raise InferenceError(
            f"model {entry.get('name')} output has shape {out_dims}; expected [-1, classes]"
        )
    return ImageTarget(
        model=str(entry["name"]),
        input_name=str(entry_input["name"]),
        input_datatype=str(entry_input["datatype"]),
        output_name=str(entry_output["name"]),
        image_size=(image_dims[1], image_dims[2]),
        num_classes=out_dims[-1],
    )
