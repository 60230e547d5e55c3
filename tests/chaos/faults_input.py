"""Hostile input: decompression bombs and garbage to every model the server serves.

Usage::

    row = bombs_and_garbage(server, SHORT)

Each model gets what its input can carry: models that take encoded bytes get
PNG bombs (a few hundred KB that decode to over a GB), a JPEG header claiming
a huge frame, truncated and random files; models that take a uint8 tensor get
wrong shapes, wrong dtypes and oversized batches. Good requests go to the same
models at the same time (so they share the batcher with the bad ones) and must
be answered as before. Requests go through the SDK's transport (typed errors)
rather than ``Client.classify``, which would refuse the bombs before sending.
"""

from __future__ import annotations

import io
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from chaos.memory import MemoryWindow, megabytes, watch_memory
from chaos.settings import Scale, sample_images
from chaos.table import FaultRow
from medserve.local_triton import LocalTriton
from medserve_client import InvalidInputError, MedServeError
from medserve_client._sync_transports import open_transport
from medserve_client.transport import Endpoint, InferCall, OutputSpec

MAX_GROWTH_BYTES = 256 * 1024 * 1024
BOMB_SIDE = 20_000  # 400 MP: 1.2 GB as RGB once decoded, ~1.2 MB as PNG.
GOOD_PER_MODEL = 4
HUGE_SIDE = 2048
_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Probe:
    """One request to one model: a good one (answer known) or a bad one (``kind``)."""

    model: str
    kind: str
    call: InferCall

    @property
    def good(self) -> bool:
        return self.kind == "good"


def _png(image: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(image).save(out, format="PNG")
    return out.getvalue()


def _jpeg_claiming(width: int, height: int) -> bytes:
    """A JPEG whose frame header (SOF0) claims ``width`` x ``height``, with no scan data."""
    sof = b"\xff\xc0\x00\x11\x08" + height.to_bytes(2, "big") + width.to_bytes(2, "big")
    sof += b"\x03\x01\x11\x00\x02\x11\x00\x03\x11\x00"
    return b"\xff\xd8" + sof + b"\xff\xd9"


def _bytes_probes(
    model: str, meta: dict[str, Any], scale: Scale, size: tuple[int, int]
) -> list[Probe]:
    from image_bombs import png_bomb  # tests/image_bombs.py: the bombs every test shares

    name = meta["inputs"][0]["name"]
    output = OutputSpec(meta["outputs"][0]["name"])

    def call(data: bytes) -> InferCall:
        array = np.array([[data]], dtype=np.object_)
        return InferCall(
            model=model,
            version="",
            input_name=name,
            datatype="BYTES",
            array=array,
            outputs=(output,),
            timeout_s=_TIMEOUT_S,
        )

    good = _png(sample_images(size, 1, seed=4)[0])
    bomb = png_bomb(BOMB_SIDE, BOMB_SIDE)
    bad = [("png bomb", bomb)] * scale.bombs_per_model + [
        ("jpeg header 60000x60000", _jpeg_claiming(60_000, 60_000)),
        ("truncated png", good[: len(good) // 2]),
        ("random bytes", os.urandom(4096)),
        ("empty", b""),
    ]
    probes = [Probe(model, kind, call(data)) for kind, data in bad]
    return probes + [Probe(model, "good", call(good)) for _ in range(GOOD_PER_MODEL)]


def _tensor_probes(model: str, meta: dict[str, Any], max_batch: int) -> list[Probe]:
    """Malformed image tensors; other inputs (the explain model's class index) well formed."""
    from tritonclient.utils import triton_to_np_dtype

    spec, *others = meta["inputs"]
    height, width, channels = (int(d) for d in spec["shape"][1:])
    output = OutputSpec(meta["outputs"][0]["name"])

    def call(array: np.ndarray, datatype: str = "UINT8") -> InferCall:
        extras = tuple(
            (
                other["name"],
                other["datatype"],
                np.zeros(
                    (len(array), *(int(d) for d in other["shape"][1:])),
                    triton_to_np_dtype(other["datatype"]),
                ),
            )
            for other in others
        )
        return InferCall(
            model=model,
            version="",
            input_name=spec["name"],
            datatype=datatype,
            array=array,
            outputs=(output,),
            timeout_s=_TIMEOUT_S,
            extra_inputs=extras,
        )

    good = sample_images((height, width), 1, seed=5)[0][None]
    bad = [
        ("wrong shape", call(np.zeros((1, 5, 5, channels), np.uint8))),
        # 12 MB: the request-size bound (medserve serve, the overlays) is its
        # own matter; this checks that the shape is refused without harm.
        ("huge tensor", call(np.zeros((1, HUGE_SIDE, HUGE_SIDE, channels), np.uint8))),
        ("wrong dtype", call(good.astype(np.float32), "FP32")),
        ("batch over max", call(np.repeat(good, max_batch + 1, axis=0))),
    ]
    probes = [Probe(model, kind, c) for kind, c in bad]
    return probes + [Probe(model, "good", call(good)) for _ in range(GOOD_PER_MODEL)]


def _probes(server: LocalTriton, scale: Scale) -> list[Probe]:
    import tritonclient.grpc as grpcclient

    probes: list[Probe] = []
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        for model in sorted(server.models):
            meta = client.get_model_metadata(model, as_json=True)
            config = client.get_model_config(model, as_json=True)["config"]
            datatype = meta["inputs"][0]["datatype"]
            if datatype == "BYTES":
                size = _image_size_for(client, server)
                probes += _bytes_probes(model, meta, scale, size)
            elif datatype == "UINT8":
                probes += _tensor_probes(model, meta, int(config.get("max_batch_size", 0)))
    return probes


def _image_size_for(client: Any, server: LocalTriton) -> tuple[int, int]:
    """(height, width) of the classifier, the uint8-input model the bytes are decoded for."""
    for model in sorted(server.models):
        meta = client.get_model_metadata(model, as_json=True)
        if meta["inputs"][0]["datatype"] == "UINT8":
            shape = [int(d) for d in meta["inputs"][0]["shape"]]
            return shape[1], shape[2]
    return (224, 224)


@dataclass(frozen=True)
class Storm:
    """How the probes of one phase ended, and the server's memory meanwhile."""

    probes: list[Probe]
    errors: list[BaseException | None]
    answers_match: list[bool]
    memory: MemoryWindow


def _storm(transport: Any, probes: list[Probe], pool: ThreadPoolExecutor, pgid: int) -> Storm:
    """The good probes alone first (their answers), then every probe at once."""
    # Alone first, as many at once as in the storm: what the server keeps for a
    # burst of that size is not counted as the bad requests'.
    warm = {i: pool.submit(transport.infer, p.call) for i, p in enumerate(probes) if p.good}
    expected = {i: future.result(_TIMEOUT_S).outputs for i, future in warm.items()}
    with watch_memory(pgid) as memory:
        futures = [pool.submit(transport.infer, p.call) for p in probes]
        errors = [future.exception(timeout=_TIMEOUT_S + 30) for future in futures]
    matches = [
        i in expected
        and error is None
        and all(_same(futures[i].result().outputs[k], v) for k, v in expected[i].items())
        for i, error in enumerate(errors)
    ]
    return Storm(probes=probes, errors=errors, answers_match=matches, memory=memory)


def _same(answer: np.ndarray, expected: np.ndarray) -> bool:
    """The same answer, up to float noise (a batch's composition may change the kernels)."""
    return answer.shape == expected.shape and bool(np.allclose(answer, expected, atol=1e-5))


def _error_name(error: BaseException | None) -> str:
    if error is None:
        return "not refused"
    if isinstance(error, MedServeError):
        return type(error).__name__
    return f"untyped {type(error).__name__}"


def bombs_and_garbage(server: LocalTriton, scale: Scale) -> FaultRow:
    """Bad and good requests at once to every model; bad ones refused clearly, good ones served.

    Two phases, each with its own memory window: encoded files (the bombs)
    to the models that decode, then malformed tensors to the others.
    """
    probes = _probes(server, scale)
    phases = {
        "files": [p for p in probes if p.call.datatype == "BYTES"],
        "tensors": [p for p in probes if p.call.datatype != "BYTES"],
    }
    transport = open_transport(Endpoint(url=server.grpc_url))
    try:
        with ThreadPoolExecutor(max(len(group) for group in phases.values())) as pool:
            storms = {
                name: _storm(transport, group, pool, server.pid or 0)
                for name, group in phases.items()
                if group
            }
        alive = server.is_alive()
    finally:
        transport.close()
    bad = [
        (probe, error)
        for storm in storms.values()
        for probe, error in zip(storm.probes, storm.errors, strict=True)
        if not probe.good
    ]
    good = [
        match
        for storm in storms.values()
        for probe, match in zip(storm.probes, storm.answers_match, strict=True)
        if probe.good
    ]
    refused = sum(
        isinstance(error, InvalidInputError) and "Traceback" not in str(error) for _, error in bad
    )
    classes = Counter(_error_name(error) for _, error in bad)
    # The first message of each refusal: the JSON shows what a client is told.
    examples = {f"{p.kind}: {_error_name(e)}": str(e)[:300] for p, e in reversed(bad)}
    growth = {name: storm.memory.peak_growth_bytes for name, storm in storms.items()}
    return FaultRow(
        fault=f"bombs and garbage to {', '.join(sorted({p.model for p in probes}))}",
        load=f"{len(bad)} bad + {len(good)} good requests at once",
        made=len(bad) + len(good),
        lost=good.count(False),
        hangs=0,
        failures=", ".join(f"{name} x{count}" for name, count in sorted(classes.items())),
        peak_rss_mb=megabytes(max(storm.memory.peak_bytes for storm in storms.values())),
        outcome=(
            f"{refused}/{len(bad)} refused as invalid input, {sum(good)}/{len(good)} good "
            "answered; RSS peak "
            + ", ".join(f"+{megabytes(value):.0f} MB ({name})" for name, value in growth.items())
        ),
        criteria={
            "every bad request refused clearly": refused == len(bad),
            "every good request answered correctly": all(good),
            "RSS grows < 256 MB": max(growth.values()) < MAX_GROWTH_BYTES,
            "server alive": alive,
        },
        examples=examples,
    )
