"""Protocol-free logic of ``explain``: the explain model's contract, requests, results, overlays.

Usage::

    entry = explain_entry_from(metadata, config)       # what <model>_explain takes and returns
    index = resolve_class_index("lesion", info.labels) # 1; None -> -1 (the predicted class)
    call = explain_call(entry, chunk, index, version="")
    explanations = to_explanations(reply, entry, info, chunk, index, latency_ms=12.0)

The served model ``<model>_explain`` takes the uint8 image and ``class_index``
(INT32 ``[1]`` per image; ``-1`` means the predicted class) and returns the
probabilities and a Grad-CAM ``heatmap`` (FP32 ``[H, W]`` in [0, 1], aligned
with the image). Names and shapes come from the server's metadata.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw

from medserve_client._core import stack_batch, to_predictions
from medserve_client._errors import InferenceError, InvalidInputError
from medserve_client._models import Explanation, ModelInfo
from medserve_client._transport import InferCall, InferReply, OutputSpec
from medserve_client.contract import PREDICTED_CLASS

SUPPORTIVE_NOTE = "Supportive only, not a diagnosis."
# How strongly the heatmap colours the image where it is hottest.
_OVERLAY_ALPHA = 0.6


@dataclass(frozen=True)
class ExplainEntry:
    """The ``<model>_explain`` model, as its metadata and config describe it."""

    name: str
    image_name: str
    class_name: str
    probabilities_name: str
    heatmap_name: str
    max_batch_size: int


def explain_entry_from(metadata: Mapping[str, Any], config: Mapping[str, Any]) -> ExplainEntry:
    """Read the explain model's tensor names and batch limit from the server.

    Raises:
        InferenceError: The model does not look like a medserve explain model.
    """
    name = str(metadata.get("name", ""))
    inputs, outputs = list(metadata.get("inputs", [])), list(metadata.get("outputs", []))
    images = [i for i in inputs if i.get("datatype") == "UINT8"]
    classes = [i for i in inputs if i.get("datatype") == "INT32"]
    # The heatmap is the output of rank 2 per item, [H, W]; probabilities are rank 1.
    batched = int(config.get("max_batch_size", 0) or 0) > 0
    item_rank = {o.get("name"): len(o.get("shape", [])) - (1 if batched else 0) for o in outputs}
    heatmaps = [n for n, rank in item_rank.items() if rank == 2]
    scores = [n for n, rank in item_rank.items() if rank == 1]
    if len(images) != 1 or len(classes) != 1 or len(heatmaps) != 1 or len(scores) != 1:
        raise InferenceError(
            f"model {name!r} is not a medserve explain model (expected a UINT8 image and an "
            "INT32 class index in, probabilities and an [H, W] heatmap out)"
        )
    return ExplainEntry(
        name=name,
        image_name=str(images[0]["name"]),
        class_name=str(classes[0]["name"]),
        probabilities_name=str(scores[0]),
        heatmap_name=str(heatmaps[0]),
        max_batch_size=int(config.get("max_batch_size", 0) or 0),
    )


def resolve_class_index(class_index: int | str | None, labels: Sequence[str]) -> int:
    """The class to explain as an index: ``None``/``-1`` -> predicted, a label -> its index.

    Raises:
        InvalidInputError: An index outside ``-1..C-1`` or an unknown label.
    """
    if class_index is None:
        return PREDICTED_CLASS
    if isinstance(class_index, str):
        if class_index not in labels:
            raise InvalidInputError(
                f"class {class_index!r} does not exist; the model's classes are {', '.join(labels)}"
            )
        return list(labels).index(class_index)
    if isinstance(class_index, bool) or not isinstance(class_index, int | np.integer):
        raise InvalidInputError(
            f"class_index must be an int, a label or None, got {type(class_index).__name__}"
        )
    if not PREDICTED_CLASS <= int(class_index) < len(labels):
        raise InvalidInputError(
            f"class index {int(class_index)} does not exist: the model has {len(labels)} "
            f"classes (0..{len(labels) - 1}: {', '.join(labels)}); pass -1 or None for the "
            "predicted class"
        )
    return int(class_index)


def explain_call(
    entry: ExplainEntry, chunk: Sequence[npt.NDArray[np.uint8]], class_index: int, *, version: str
) -> InferCall:
    """The request for a chunk of preprocessed images (one class index for all of them)."""
    batched = entry.max_batch_size > 0
    indices = np.full((len(chunk), 1), class_index, dtype=np.int32)
    return InferCall(
        model=entry.name,
        version=version,
        input_name=entry.image_name,
        datatype="UINT8",
        array=stack_batch(chunk, batched),
        extra_inputs=((entry.class_name, "INT32", indices if batched else indices[0]),),
        outputs=(OutputSpec(entry.probabilities_name), OutputSpec(entry.heatmap_name)),
    )


def to_explanations(
    reply: InferReply,
    entry: ExplainEntry,
    info: ModelInfo,
    chunk: Sequence[npt.NDArray[np.uint8]],
    class_index: int,
    *,
    latency_ms: float,
) -> list[Explanation]:
    """One :class:`Explanation` per image of the chunk, overlays rendered."""
    predictions = to_predictions(
        reply.outputs[entry.probabilities_name].reshape(len(chunk), -1),
        info=info,
        top_k=info.num_classes,
        model_version=reply.model_version,
        latency_ms=latency_ms,
        model_name=entry.name,
    )
    heatmaps = np.asarray(reply.outputs[entry.heatmap_name], dtype=np.float32)
    heatmaps = heatmaps.reshape(len(chunk), *heatmaps.shape[-2:])
    results = []
    for image, heatmap, prediction in zip(chunk, heatmaps, predictions, strict=True):
        if heatmap.shape != image.shape[:2]:
            raise InferenceError(
                f"model {entry.name!r} returned a {heatmap.shape} heatmap for a "
                f"{image.shape[:2]} image"
            )
        explained = (
            int(np.argmax(prediction.probabilities))
            if class_index == PREDICTED_CLASS
            else class_index
        )
        frozen = heatmap.copy()
        frozen.setflags(write=False)
        results.append(
            Explanation(
                prediction=prediction,
                class_index=explained,
                label=info.labels[explained],
                heatmap=frozen,
                overlay=render_overlay(image, frozen, caption=info.labels[explained]),
                note=SUPPORTIVE_NOTE,
            )
        )
    return results


def colormap(heatmap: npt.NDArray[np.float32]) -> npt.NDArray[np.uint8]:
    """A jet-like colour map (blue, cyan, yellow, red) of values in [0, 1], as uint8 RGB."""
    # The middle of the jet ramp: pure blue at 0, pure red at 1.
    x = 0.125 + 0.75 * np.clip(heatmap, 0.0, 1.0)[..., None]
    centres = np.array([0.75, 0.5, 0.25], dtype=np.float32)  # R, G, B peaks
    rgb = np.clip(1.5 - np.abs(4.0 * x - 4.0 * centres), 0.0, 1.0)
    return np.round(rgb * 255.0).astype(np.uint8)


def render_overlay(
    image: npt.NDArray[np.uint8], heatmap: npt.NDArray[np.float32], *, caption: str
) -> Image.Image:
    """The heatmap blended over the image, above a banner saying it is supportive only.

    Cold regions keep the original pixels; the hottest are 60 % heatmap colour.
    The top ``H`` rows are the blended image, pixel for pixel; the banner is
    added below them, so it hides nothing.
    """
    # sqrt: Grad-CAM maps are peaked; the rim of the evidence should show too.
    weight = (_OVERLAY_ALPHA * np.sqrt(np.clip(heatmap, 0.0, 1.0)))[..., None]
    blended = image.astype(np.float32) * (1.0 - weight) + colormap(heatmap) * weight
    picture = Image.fromarray(np.round(blended).astype(np.uint8), mode="RGB")
    text = f"Grad-CAM: {caption}\n{SUPPORTIVE_NOTE}"
    probe = ImageDraw.Draw(picture)
    box = probe.multiline_textbbox((0, 0), text)
    overlay = Image.new("RGB", (picture.width, picture.height + int(box[3]) + 6), (0, 0, 0))
    overlay.paste(picture, (0, 0))
    ImageDraw.Draw(overlay).multiline_text((3, picture.height + 3), text, fill=(255, 255, 255))
    return overlay
