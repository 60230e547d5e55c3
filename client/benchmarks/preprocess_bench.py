"""Client-side cost per image and per request: preprocessing throughput and serialization.

Usage::

    .venv/bin/python client/benchmarks/preprocess_bench.py              # 224x224 model input
    .venv/bin/python client/benchmarks/preprocess_bench.py --size 32 --batch 64 --json out.json

Measures, on one thread (so "per core"):

* preprocessing throughput of ``medserve_client`` (decode, EXIF, RGB, resize,
  uint8) for a 512x512 JPEG, a 2048x2048 PNG and pydicom's ``CT_small.dcm``
  (modality LUT, window, 8 bits, resize);
* serialization cost of one request of ``--batch`` images, uint8 against
  float32: building the tritonclient gRPC request message and serialising it
  to bytes, and the size of those bytes.

A benchmark, not a test: it prints measured figures and asserts nothing.
Absolute numbers drift on shared machines; compare ratios from one run.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


def _photo(height: int, width: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (max(2, height // 16), max(2, width // 16), 3), dtype=np.uint8)
    image = np.asarray(Image.fromarray(base).resize((width, height), Image.Resampling.BICUBIC))
    return np.clip(image + rng.normal(0, 8, image.shape), 0, 255).astype(np.uint8)


def _encode(array: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def _time_per_call(fn: Callable[[], Any], *, min_seconds: float, min_calls: int = 5) -> list[float]:
    """Seconds per call, one sample per call, for at least ``min_seconds`` in total."""
    fn()  # Warm-up: imports, caches.
    samples: list[float] = []
    started = time.perf_counter()
    while len(samples) < min_calls or time.perf_counter() - started < min_seconds:
        begin = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - begin)
    return samples


def _summary(samples: list[float]) -> dict[str, float]:
    median = statistics.median(samples)
    return {
        "calls": len(samples),
        "median_ms": round(median * 1000, 3),
        "p90_ms": round(sorted(samples)[int(0.9 * (len(samples) - 1))] * 1000, 3),
        "per_second": round(1.0 / median, 1),
    }


def bench_preprocessing(size: int, seconds: float) -> dict[str, Any]:
    """Throughput of prepare_tensor for the three reference inputs."""
    from pydicom.data import get_testdata_file

    from medserve_client._inputs import prepare_tensor

    ct = get_testdata_file("CT_small.dcm", download=False)
    inputs = {
        "jpeg_512x512": _encode(_photo(512, 512, 1), "JPEG"),
        "png_2048x2048": _encode(_photo(2048, 2048, 2), "PNG"),
        "dicom_CT_small_128x128": Path(str(ct)).read_bytes(),
    }
    results: dict[str, Any] = {}
    for name, payload in inputs.items():

        def prepare(payload: bytes = payload) -> object:
            return prepare_tensor(payload, index=0, target_hw=(size, size))

        samples = _time_per_call(prepare, min_seconds=seconds)
        results[name] = {"encoded_bytes": len(payload), **_summary(samples)}
    return results


def bench_serialization(size: int, batch: int, seconds: float) -> dict[str, Any]:
    """Cost of building and serialising one gRPC request, uint8 against float32."""
    import tritonclient.grpc as grpcclient
    from tritonclient.grpc import service_pb2

    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
    payloads = {"uint8": images, "float32": images.astype(np.float32) / 255.0}
    results: dict[str, Any] = {}
    for name, array in payloads.items():
        datatype = "UINT8" if array.dtype == np.uint8 else "FP32"

        def serialize(array: np.ndarray = array, datatype: str = datatype) -> bytes:
            tensor = grpcclient.InferInput("image", list(array.shape), datatype)
            tensor.set_data_from_numpy(array)
            request = service_pb2.ModelInferRequest(model_name="medcnn")
            request.inputs.extend([tensor._get_tensor()])
            request.raw_input_contents.extend([tensor._get_content()])
            return bytes(request.SerializeToString())

        wire_bytes = len(serialize())
        samples = _time_per_call(serialize, min_seconds=seconds)
        results[name] = {"request_bytes": wire_bytes, **_summary(samples)}
    results["float32_over_uint8"] = {
        "bytes": round(results["float32"]["request_bytes"] / results["uint8"]["request_bytes"], 2),
        "time": round(results["float32"]["median_ms"] / results["uint8"]["median_ms"], 2),
    }
    return results


def main(argv: list[str] | None = None) -> int:
    """Run both benchmarks and print (and optionally save) the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224, help="model input side (default 224)")
    parser.add_argument("--batch", type=int, default=16, help="images per request (default 16)")
    parser.add_argument("--seconds", type=float, default=2.0, help="time per case (default 2)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    report = {
        "model_input": [args.size, args.size, 3],
        "preprocessing_one_thread": bench_preprocessing(args.size, args.seconds),
        f"serialization_batch_{args.batch}": bench_serialization(
            args.size, args.batch, args.seconds
        ),
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
