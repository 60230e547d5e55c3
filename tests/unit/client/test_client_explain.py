"""Specs of the client's explain helpers: class choice, the explain model's contract, overlays."""

from __future__ import annotations

import numpy as np
import pytest

from medserve_client import InferenceError, InvalidInputError
from medserve_client._explain import (
    PREDICTED_CLASS,
    SUPPORTIVE_NOTE,
    colormap,
    explain_call,
    explain_entry_from,
    render_overlay,
    resolve_class_index,
)

LABELS = ("normal", "lesion")


def _metadata(heatmap_shape: list[str]) -> dict[str, object]:
    return {
        "name": "medcnn_explain",
        "inputs": [
            {"name": "image", "datatype": "UINT8", "shape": ["-1", "16", "16", "3"]},
            {"name": "class_index", "datatype": "INT32", "shape": ["-1", "1"]},
        ],
        "outputs": [
            {"name": "probabilities", "datatype": "FP32", "shape": ["-1", "2"]},
            {"name": "heatmap", "datatype": "FP32", "shape": heatmap_shape},
        ],
    }


def test_resolve_class_index_takes_none_minus_one_an_index_or_a_label() -> None:
    assert resolve_class_index(None, LABELS) == PREDICTED_CLASS
    assert resolve_class_index(-1, LABELS) == PREDICTED_CLASS
    assert resolve_class_index(1, LABELS) == 1
    assert resolve_class_index("lesion", LABELS) == 1


@pytest.mark.parametrize("bad", [2, -2, 99])
def test_resolve_class_index_refuses_an_index_that_does_not_exist_naming_the_classes(
    bad: int,
) -> None:
    with pytest.raises(InvalidInputError, match=r"0\.\.1: normal, lesion"):
        resolve_class_index(bad, LABELS)


def test_resolve_class_index_refuses_an_unknown_label_and_a_wrong_type() -> None:
    with pytest.raises(InvalidInputError, match="'tumour' does not exist"):
        resolve_class_index("tumour", LABELS)
    with pytest.raises(InvalidInputError, match="must be an int, a label or None"):
        resolve_class_index(1.0, LABELS)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        resolve_class_index(True, LABELS)


def test_explain_entry_reads_names_and_batch_limit_from_the_server() -> None:
    entry = explain_entry_from(_metadata(["-1", "16", "16"]), {"max_batch_size": 8})
    assert (entry.image_name, entry.class_name) == ("image", "class_index")
    assert (entry.probabilities_name, entry.heatmap_name) == ("probabilities", "heatmap")
    assert entry.max_batch_size == 8


def test_explain_entry_refuses_a_model_that_is_not_an_explain_model() -> None:
    with pytest.raises(InferenceError, match="not a medserve explain model"):
        explain_entry_from(_metadata(["-1", "16"]), {"max_batch_size": 8})


def test_explain_call_sends_one_class_index_per_image() -> None:
    entry = explain_entry_from(_metadata(["-1", "16", "16"]), {"max_batch_size": 8})
    chunk = [np.zeros((16, 16, 3), np.uint8)] * 3
    call = explain_call(entry, chunk, 1, version="")
    assert call.array is not None and call.array.shape == (3, 16, 16, 3)
    ((name, datatype, indices),) = call.extra_inputs
    assert (name, datatype) == ("class_index", "INT32")
    assert indices.tolist() == [[1], [1], [1]]


def test_overlay_keeps_cold_pixels_colours_hot_ones_and_says_it_is_not_a_diagnosis() -> None:
    image = np.full((16, 16, 3), 100, np.uint8)
    heatmap = np.zeros((16, 16), np.float32)
    heatmap[4, 4] = 1.0
    overlay = render_overlay(image, heatmap, caption="lesion")
    pixels = np.asarray(overlay)
    assert overlay.width == 16 and overlay.height > 16  # The banner is below the image.
    assert (pixels[0, 0] == 100).all()
    assert not (pixels[4, 4] == 100).all()
    assert "not a diagnosis" in SUPPORTIVE_NOTE
    assert colormap(np.array([0.0, 1.0], np.float32)).tolist() == [[0, 0, 255], [255, 0, 0]]
