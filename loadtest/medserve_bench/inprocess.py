"""The benchmark's limit: the served model called in-process at its best batch size.

Usage::

    python -m medserve_bench.inprocess model_repository/medcnn/1/model.savedmodel \\
        --batch-sizes 1,8,16,32,64 --duration-s 5          # TensorFlow, prints JSON
    python -m medserve_bench.inprocess medcnn/1/model.onnx        # onnxruntime FP32
    python -m medserve_bench.inprocess medcnn/1/model_int8.onnx   # onnxruntime INT8

    limit = measure_limit(Path(".../model.savedmodel"), batch_sizes=(1, 16, 32), duration_s=3)
    limit["best_images_per_s"], limit["best_batch_size"], limit["runtime"]

    runner = open_runner(Path(".../model.onnx"), intra_op=2, inter_op=1)
    runner.run(uint8_batch)["probabilities"]        # what the PyTriton peer calls too

No server, no network, no serialisation: the SavedModel's ``serving_default``
signature, or a ``.onnx`` file in an onnxruntime session (uint8 in,
probabilities out, what Triton's Python backend runs under either ``runtime``
of ``configs/local.pbtxt``), is called back to back on a uint8 batch already
in memory. The thread pools are those the backend gives a single instance
(intra-op = the CPUs, inter-op = 1; see ``medserve/triton_backend/model.py``),
so the served path and its limit run the same configuration. The benchmark
runs this in its own process so neither runtime shares one with the load
generator. Each batch size also records the CPU time the process used
(``cpu_ms_per_image``, ``cores``): the served cells' CPU per image is judged
against it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# The shared name of the INT8 export (medserve export --int8) in a version directory.
INT8_ONNX_FILENAME = "model_int8.onnx"


@dataclass(frozen=True)
class Runner:
    """One model opened in one runtime, ready to be called on uint8 batches.

    Attributes:
        runtime: Runtime and version, e.g. ``"tensorflow 2.21.0"``,
            ``"onnxruntime 1.28.0 fp32"`` or ``"onnxruntime 1.28.0 int8"``.
        input_name: The model's image input.
        image_shape: ``(height, width, channels)`` of one image.
        run: Calls the model on a uint8 batch ``[N, H, W, C]``; returns every
            output by name, as numpy arrays in host memory.
    """

    runtime: str
    input_name: str
    image_shape: tuple[int, int, int]
    run: Callable[[np.ndarray], dict[str, np.ndarray]]


class _TensorFlowCall:
    """``serving_default`` of a loaded SavedModel, outputs copied to host memory."""

    def __init__(self, loaded: Any, input_name: str) -> None:
        self._loaded = loaded  # The signature's variables live as long as this object.
        self._fn = loaded.signatures["serving_default"]
        self._input_name = input_name

    def __call__(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        # .numpy(): results reach host memory, as a server would send them.
        outputs = self._fn(**{self._input_name: pixels})
        return {name: value.numpy() for name, value in outputs.items()}


def _open_tensorflow(path: Path, intra_op: int, inter_op: int) -> Runner:
    import tensorflow as tf

    # Set before TensorFlow creates its runtime context, as the backend does.
    tf.config.threading.set_intra_op_parallelism_threads(intra_op)
    tf.config.threading.set_inter_op_parallelism_threads(inter_op)
    loaded = tf.saved_model.load(str(path))
    fn = loaded.signatures["serving_default"]
    ((input_name, spec),) = fn.structured_input_signature[1].items()
    height, width, channels = (int(d) for d in spec.shape[1:])
    call = _TensorFlowCall(loaded, input_name)
    return Runner(f"tensorflow {tf.__version__}", input_name, (height, width, channels), call)


def _open_onnxruntime(path: Path, intra_op: int, inter_op: int) -> Runner:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op
    options.inter_op_num_threads = inter_op
    # Idle pool threads sleep instead of spinning: they share the CPUs with
    # Triton and the clients, as in the backend (model.py).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    (model_input,) = session.get_inputs()
    names = [output.name for output in session.get_outputs()]
    height, width, channels = (int(d) for d in model_input.shape[1:])
    precision = "int8" if path.name == INT8_ONNX_FILENAME else "fp32"

    def run(pixels: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip(names, session.run(names, {model_input.name: pixels}), strict=True))

    runtime = f"onnxruntime {ort.__version__} {precision}"
    return Runner(runtime, model_input.name, (height, width, channels), run)


def open_runner(artifact: Path, *, intra_op: int, inter_op: int = 1) -> Runner:
    """Open a ``model.savedmodel`` directory (TensorFlow) or an ``.onnx`` file (onnxruntime).

    Args:
        artifact: The model file or directory; ``model_int8.onnx`` is labelled INT8.
        intra_op: Intra-op threads of the runtime.
        inter_op: Inter-op threads of the runtime.

    Raises:
        FileNotFoundError: ``artifact`` does not exist.
    """
    if not artifact.exists():
        raise FileNotFoundError(f"no model at {artifact}: run medserve export first")
    if artifact.suffix == ".onnx":
        return _open_onnxruntime(artifact, intra_op, inter_op)
    return _open_tensorflow(artifact, intra_op, inter_op)


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
            or a ``.onnx`` file (run with onnxruntime).
        batch_sizes: Batch sizes to try, each for ``duration_s`` after one
            untimed warm-up call (the first call traces the graph).
        duration_s: Timed seconds per batch size.
        intra_op: Intra-op threads (default: the CPUs available).
        inter_op: Inter-op threads.
        seed: Seed of the random pixels.
    """
    cpus = len(os.sched_getaffinity(0))
    runner = open_runner(savedmodel, intra_op=intra_op or cpus, inter_op=inter_op)
    rng = np.random.default_rng(seed)
    per_batch: dict[str, float] = {}
    cpu_ms: dict[str, float] = {}
    cores: dict[str, float] = {}
    for batch in batch_sizes:
        pixels = rng.integers(0, 256, (batch, *runner.image_shape), dtype=np.uint8)
        runner.run(pixels)  # Warm-up: tracing and allocation are not throughput.
        images = 0
        cpu_started = time.process_time()
        started = time.perf_counter()
        while (elapsed := time.perf_counter() - started) < duration_s:
            runner.run(pixels)
            images += batch
        cpu_s = time.process_time() - cpu_started  # Every thread of this process.
        per_batch[str(batch)] = round(images / elapsed, 3)
        cpu_ms[str(batch)] = round(cpu_s * 1000.0 / images, 3)
        cores[str(batch)] = round(cpu_s / elapsed, 3)
    best = max(per_batch, key=lambda k: per_batch[k])
    return {
        "savedmodel": str(savedmodel),  # The key bench.py reads; an .onnx path for onnxruntime.
        "runtime": runner.runtime,
        "input": {"name": runner.input_name, "shape": list(runner.image_shape), "dtype": "uint8"},
        "images_per_s": per_batch,
        "cpu_ms_per_image": cpu_ms,
        "cores": cores,
        "threads": {"intra_op": intra_op or cpus, "inter_op": inter_op},
        "duration_s_per_batch_size": duration_s,
        "best_batch_size": int(best),
        "best_images_per_s": per_batch[best],
        "best_cpu_ms_per_image": cpu_ms[best],
        "best_cores": cores[best],
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
