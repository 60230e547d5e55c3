"""The benchmark's limit: the served SavedModel called in-process at its best batch size.

Usage::

    python -m medserve_bench.inprocess model_repository/medcnn/1/model.savedmodel \\
        --batch-sizes 1,8,16,32,64 --duration-s 5          # prints JSON

    limit = measure_limit(Path(".../model.savedmodel"), batch_sizes=(1, 16, 32), duration_s=3)
    limit["best_images_per_s"], limit["best_batch_size"]

No server, no network, no serialisation: the ``serving_default`` signature
(uint8 in, probabilities out, the same graph Triton's Python backend runs) is
called back to back on a uint8 batch already in memory. The thread pools are
those the backend gives a single instance (intra-op = the CPUs, inter-op = 1;
see ``medserve/triton_backend/model.py``), so the served path and its limit
run the same TensorFlow configuration. The benchmark runs this in its own
process so TensorFlow never shares one with the load generator.
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


def measure_limit(
    savedmodel: Path,
    *,
    batch_sizes: Sequence[int] = (1, 8, 16, 32, 64),
    duration_s: float = 5.0,
    intra_op: int | None = None,
    inter_op: int = 1,
    seed: int = 0,
) -> dict[str, Any]:
    """Images per second of the SavedModel at each batch size, and the best.

    Args:
        savedmodel: A ``model.savedmodel`` directory with ``serving_default``.
        batch_sizes: Batch sizes to try, each for ``duration_s`` after one
            untimed warm-up call (the first call traces the graph).
        duration_s: Timed seconds per batch size.
        intra_op: TensorFlow intra-op threads (default: the CPUs available).
        inter_op: TensorFlow inter-op threads.
        seed: Seed of the random pixels.
    """
    cpus = len(os.sched_getaffinity(0))
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
    best = max(per_batch, key=lambda k: per_batch[k])
    return {
        "savedmodel": str(savedmodel),
        "input": {"name": input_name, "shape": [height, width, channels], "dtype": spec.dtype.name},
        "threads": {"intra_op": intra_op or cpus, "inter_op": inter_op},
        "duration_s_per_batch_size": duration_s,
        "images_per_s": per_batch,
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
