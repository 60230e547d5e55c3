"""Triton's stock image clients can classify with ``medcnn``, over gRPC and HTTP.

Usage::

    .venv/bin/pytest tests/integration/test_stock_clients.py

NVIDIA's example ``image_client.py`` (triton-inference-server/client) is not
copied here. This test applies the rules it documents to the live server's
metadata and config, in the two shapes the two protocols return them
(protobuf messages over gRPC, JSON over HTTP), then sends what such a client
sends (a Pillow-resized uint8 batch in the declared layout) and reads the
classification extension's ``score:index:label`` strings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from PIL import Image
from tritonclient.grpc import model_config_pb2 as mc

from medserve.local_triton import LocalTriton
from medserve.spec import ModelSpec

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class StockView:
    """What a stock image client learns from the metadata and config."""

    max_batch_size: int
    input_name: str
    output_name: str
    channels: int
    height: int
    width: int
    layout: str
    datatype: str


def _field(entry: Any, name: str) -> Any:
    return entry[name] if isinstance(entry, dict) else getattr(entry, name)


def stock_view(metadata: Any, config: Any) -> StockView:
    """Apply a stock image client's checks; raise AssertionError where it would refuse."""
    inputs, outputs = list(_field(metadata, "inputs")), list(_field(metadata, "outputs"))
    assert len(inputs) == 1 and len(outputs) == 1, "one input and one output"
    (config_input,) = list(_field(config, "input"))
    (meta_in,), (meta_out,) = inputs, outputs
    assert _field(meta_out, "datatype") == "FP32"
    batching = int(_field(config, "max_batch_size")) > 0
    output_dims = [int(d) for d in _field(meta_out, "shape")][1 if batching else 0 :]
    assert sum(d > 1 for d in output_dims) == 1, "the output must be a vector"
    shape = [int(d) for d in _field(meta_in, "shape")]
    assert len(shape) == 3 + batching, "an image input: 3 dims plus the batch"
    layout = _field(config_input, "format")
    if not isinstance(layout, str):  # gRPC: the enum's number.
        layout = mc.ModelInput.Format.Name(layout)
    assert layout in ("FORMAT_NHWC", "FORMAT_NCHW"), f"unusable input format {layout}"
    dims = shape[1:] if batching else shape
    height, width, channels = dims if layout == "FORMAT_NHWC" else (dims[1], dims[2], dims[0])
    return StockView(
        max_batch_size=int(_field(config, "max_batch_size")),
        input_name=_field(meta_in, "name"),
        output_name=_field(meta_out, "name"),
        channels=channels,
        height=height,
        width=width,
        layout=layout,
        datatype=_field(meta_in, "datatype"),
    )


def _pictures(count: int) -> list[Image.Image]:
    rng = np.random.default_rng(21)
    return [
        Image.fromarray(rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)) for _ in range(count)
    ]


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_a_stock_image_client_accepts_medcnn_and_reads_labelled_classes(
    local_triton: LocalTriton, served_spec: ModelSpec, protocol: str
) -> None:
    module: Any = grpcclient if protocol == "grpc" else httpclient
    url = local_triton.grpc_url if protocol == "grpc" else local_triton.http_address
    with module.InferenceServerClient(url) as client:
        metadata = client.get_model_metadata(served_spec.name)
        config = client.get_model_config(served_spec.name)
        view = stock_view(metadata, config.config if protocol == "grpc" else config)

        assert view.layout == "FORMAT_NHWC" and view.datatype == "UINT8"
        assert (view.height, view.width, view.channels) == served_spec.input_shape
        size = (view.width, view.height)
        resized = [p.convert("RGB").resize(size, Image.Resampling.BILINEAR) for p in _pictures(3)]
        batch = np.stack([np.asarray(picture, dtype=np.uint8) for picture in resized])
        tensor = module.InferInput(view.input_name, list(batch.shape), view.datatype)
        tensor.set_data_from_numpy(batch)
        classes = client.infer(
            served_spec.name,
            [tensor],
            outputs=[module.InferRequestedOutput(view.output_name, class_count=1)],
        ).as_numpy(view.output_name)
        probabilities = client.infer(served_spec.name, [tensor]).as_numpy(view.output_name)

    assert classes.shape == (3, 1)
    for row, expected in zip(classes, probabilities, strict=True):
        text = row[0].decode() if isinstance(row[0], bytes) else str(row[0])
        score, index, label = text.split(":")
        assert int(index) == int(np.argmax(expected))
        assert label == served_spec.labels[int(index)]
        assert float(score) == pytest.approx(float(np.max(expected)), abs=1e-5)
