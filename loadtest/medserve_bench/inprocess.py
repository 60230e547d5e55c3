"""The benchmark's limit: the served model called in-process at its best batch size.

Usage::

    python -m medserve_bench.inprocess model_repository/medcnn/1/model.savedmodel \\
        --batch-sizes 1,8,16,32,64 --duration-s 5          # TensorFlow, prints JSON
    python -m medserve_bench.inprocess model_repository/medcnn/1/model.onnx   # onnxruntime

    limit = measure_limit(Path(".../model.savedmodel"), batch_sizes=(1, 16, 32), duration_s=3)
    limit["best_images_per_s"], limit["best_batch_size"], limit["runtime"]

No server, no network, no serialisation: the SavedModel's ``serving_default``
signature, or ``model.onnx`` in an onnxruntime session (uint8 in,
probabilities out, what Triton's Python backend runs under either ``runtime``
of ``configs/local.pbtxt``), is called back to back on a uint8 batch already
in memory. The thread pools are those the backend gives a single instance
(intra-op = the CPUs, inter-op = 1; see ``medserve/triton_backend/model.py``),
so the served path and its limit run the same configuration. The benchmark
runs this in its own process so neither runtime shares one with the load
generator.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def _configure_threads(intra_op: int, inter_op: int) -> Any:
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(intra_op)
    tf.config.threading.set_inter_op_parallelism_threads(inter_op)
    return tf


def _onnx_limit(
    path: Path,
    batch_sizes: Sequence[int],
    duration_s: float,
    intra_op: int,
    inter_op: int,
    seed: int,
) -> dict[str, Any]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op
    options.inter_op_num_threads = inter_op
    # Idle pool threads sleep instead of spinning: they share the CPUs with
    # Triton and the clients, as in the backend (model.py).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    (model_input,) = session.get_inputs()
    height, width, channels = (int(d) for d in model_input.shape[1:])
    rng = np.random.default_rng(seed)
    per_batch: dict[str, float] = {}
    for batch in batch_sizes:
        feed = {model_input.name: rng.integers(0, 256, (batch, height, width, channels), np.uint8)}
        session.run(None, feed)  # Warm-up: allocation is not throughput.
        images = 0
        started = time.perf_counter()
        while (elapsed := time.perf_counter() - started) < duration_s:
            session.run(None, feed)
            images += batch
        per_batch[str(batch)] = round(images / elapsed, 3)
    return {
        "runtime": f"onnxruntime {ort.__version__}",
        "input": {"name": model_input.name, "shape": [height, width, channels], "dtype": "uint8"},
        "images_per_s": per_batch,
    }


def measure_limit(
    savedmodel: Path,
    *,
    batch_sizes: Sequence[int] = (1, 8, 16, 32, 64),
    duration_s: float = 5.0,
    intra_op: int | None = None,
    inter_op: int = 1,
    seed: int = 0,
) -> dict[str, Any]:
    """Images per second of the model at each batch size, and the best.

    Args:
        savedmodel: A ``model.savedmodel`` directory with ``serving_default``,
            or a ``model.onnx`` file (run with onnxruntime).
        batch_sizes: Batch sizes to try, each for ``duration_s`` after one
            untimed warm-up call (the first call traces the graph).
        duration_s: Timed seconds per batch size.
        intra_op: TensorFlow intra-op threads (default: the CPUs available).
        inter_op: TensorFlow inter-op threads.
        seed: Seed of the random pixels.
    """
    cpus = len(os.sched_getaffinity(0))
    if savedmodel.suffix == ".onnx":
        found = _onnx_limit(savedmodel, batch_sizes, duration_s, intra_op or cpus, inter_op, seed)
        return _summary(savedmodel, found, intra_op or cpus, inter_op, duration_s)
    tf = _configure_threads(intra_op or cpus, inter_op)
    loaded = tf.saved_model.load(str(savedmodel))
    fn = loaded.signatures["serving_default"]
    ((input_name, spec),) = fn.structured_input_signature[1].items()
    height, width, channels = (int(d) for d in spec.shape[1:])
    rng = np.random.default_rng(seed)
    per_batch: dict[str, float] = {}
    for batch in batch_sizes:
        pixels = rng.integers(0, 256, (batch, height, width, channels), dtype=np.uint8)
        feed = {input_name: tf.constant(pixels, dtype=spec.dtype)}
        for output in fn(**feed).values():
            output.numpy()  # Warm-up: tracing and allocation are not throughput.
        images = 0
        started = time.perf_counter()
        while (elapsed := time.perf_counter() - started) < duration_s:
            for output in fn(**feed).values():
                output.numpy()  # Results reach host memory, as a server would send them.
            images += batch
        per_batch[str(batch)] = round(images / elapsed, 3)
    found = {
        "runtime": f"tensorflow {tf.__version__}",
        "input": {"name": input_name, "shape": [height, width, channels], "dtype": spec.dtype.name},
        "images_per_s": per_batch,
    }
    return _summary(savedmodel, found, intra_op or cpus, inter_op, duration_s)


def _summary(
    artifact: Path, found: dict[str, Any], intra_op: int, inter_op: int, duration_s: float
) -> dict[str, Any]:
    per_batch = found["images_per_s"]
    best = max(per_batch, key=lambda k: per_batch[k])
    return {
        "savedmodel": str(artifact),  # The key bench.py reads; an .onnx path for onnxruntime.
        **found,
        "threads": {"intra_op": intra_op, "inter_op": inter_op},
        "duration_s_per_batch_size": duration_s,
        "best_batch_size": int(best),
        "best_images_per_s": per_batch[best],
    }


def main(argv: list[str] | None = None) -> int:
    """Print the measurement of ``argv`` as one JSON document on stdout."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("savedmodel", type=Path)
    parser.add_argument("--batch-sizes", default="1,8,16,32,64")
    parser.add_argument("--duration-s", type=float, default=5.0)
    parser.add_argument("--intra-op", type=int, default=None)
    parser.add_argument("--inter-op", type=int, default=1)
    args = parser.parse_args(argv)
    result = measure_limit(
        args.savedmodel,
        batch_sizes=[int(b) for b in args.batch_sizes.split(",")],
        duration_s=args.duration_s,
        intra_op=args.intra_op,
        inter_op=args.inter_op,
    )
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
