"""Load an exported repository under the serving image's TensorFlow (2.17) like Triton.

Usage::

    .venv-compat/bin/python export/compat/check_savedmodel.py model_repository --name medcnn

Runs in ``.venv-compat`` (``tensorflow-cpu==2.17.1``, ``numpy<2``), the
TensorFlow inside ``nvcr.io/nvidia/tritonserver:25.02-py3``, and deliberately
imports nothing of ``medserve``, which needs a newer TensorFlow. For the newest
version (or ``--version``) it:

1. loads ``<name>/<v>/model.savedmodel`` through the TF1 session loader over the
   ``serve`` tag, feeding and fetching the ``serving_default`` SignatureDef
   tensors, as Triton's TF backend does, and through ``tf.saved_model.load``;
2. compares both outputs on the recorded batch (``expected_io.npz``, written at
   export by TF 2.21 and Keras) within 1e-5;
3. decodes a PNG of the served size (losslessly) and a JPEG through the
   ``<name>_preprocess`` model with both loaders;
4. runs the recorded batch of ``<name>_explain`` (Grad-CAM, gradient ops in
   the graph) through both loaders: probabilities within 1e-5, heatmaps 1e-4;
5. when the version has ``model.onnx``, loads it with the onnxruntime of
   Triton 26.08/26.09 and compares it with the recording (``check_onnx.py``).

Exit status 0 when all pass, 1 with a one-line reason otherwise.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow as tf

TOLERANCE = 1e-5
# The served contract for Grad-CAM heatmaps (a ratio through a gradient).
HEATMAP_TOLERANCE = 1e-4
SIGNATURE = "serving_default"


def session_run(path: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run ``serving_default`` through a TF1 session, as Triton's TF backend does."""
    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
        meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], str(path))
        signature = meta_graph.signature_def[SIGNATURE]
        keys = sorted(signature.outputs)
        values = session.run(
            [signature.outputs[k].name for k in keys],
            {signature.inputs[k].name: v for k, v in feeds.items()},
        )
    return dict(zip(keys, values, strict=True))


def eager_run(path: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run ``serving_default`` after ``tf.saved_model.load``."""
    function = tf.saved_model.load(str(path)).signatures[SIGNATURE]
    outputs = function(**{k: tf.constant(v) for k, v in feeds.items()})
    return {k: v.numpy() for k, v in outputs.items()}


def newest_version(model_dir: Path) -> int:
    versions = [int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()]
    if not versions:
        raise SystemExit(f"compat: {model_dir} has no version; run `make export` first")
    return max(versions)


def check_classifier(version_dir: Path) -> None:
    path = version_dir / "model.savedmodel"
    with np.load(version_dir / "expected_io.npz", allow_pickle=False) as data:
        images, expected = data["image"], data["probabilities"]
    for loader, run in (("TF1 session loader", session_run), ("tf.saved_model.load", eager_run)):
        got = run(path, {"image": images})["probabilities"]
        diff = float(np.max(np.abs(got.astype(np.float64) - expected)))
        if not diff <= TOLERANCE:
            raise SystemExit(f"compat: {path}: {loader} differs by {diff:.3g} > {TOLERANCE}")
        print(f"ok  {path}: TF {tf.__version__} {loader}: max |diff| {diff:.1e} <= {TOLERANCE}")


def check_explain(version_dir: Path) -> None:
    """The Grad-CAM model: gradient ops loaded and run under this TensorFlow."""
    path = version_dir / "model.savedmodel"
    names = ("image", "class_index", "probabilities", "heatmap")
    with np.load(version_dir / "expected_io.npz", allow_pickle=False) as data:
        images, indices, probabilities, heatmaps = (data[name] for name in names)
    feeds = {"image": images, "class_index": indices}
    for loader, run in (("TF1 session loader", session_run), ("tf.saved_model.load", eager_run)):
        got = run(path, feeds)
        diffs = []
        for name, expected, tolerance in (
            ("probabilities", probabilities, TOLERANCE),
            ("heatmap", heatmaps, HEATMAP_TOLERANCE),
        ):
            diff = float(np.max(np.abs(got[name].astype(np.float64) - expected)))
            if not diff <= tolerance:
                raise SystemExit(
                    f"compat: {path}: {loader} {name} differs by {diff:.3g} > {tolerance}"
                )
            diffs.append(f"{name} max |diff| {diff:.1e} <= {tolerance}")
        print(f"ok  {path}: TF {tf.__version__} {loader}: {', '.join(diffs)}")


def check_preprocess(version_dir: Path, height: int, width: int) -> None:
    path = version_dir / "model.savedmodel"
    rng = np.random.default_rng(3)
    exact = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    png = tf.io.encode_png(exact).numpy()
    jpeg = tf.io.encode_jpeg(rng.integers(0, 256, (height * 2, width + 3, 3), np.uint8)).numpy()
    feeds = {"image_bytes": np.array([[png], [jpeg]], dtype=object)}
    session = session_run(path, feeds)["image"]
    eager = eager_run(path, feeds)["image"]
    if session.shape != (2, height, width, 3) or not np.array_equal(session, eager):
        raise SystemExit(
            f"compat: {path}: decoded {session.shape}; loaders agree: "
            f"{np.array_equal(session, eager)}"
        )
    if not np.array_equal(session[0], exact):
        raise SystemExit(f"compat: {path}: a PNG of the served size did not decode losslessly")
    shape = session.shape[1:]
    print(f"ok  {path}: TF {tf.__version__} both loaders decode PNG and JPEG to {shape}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("repo", type=Path)
    parser.add_argument("--name", default="medcnn")
    parser.add_argument("--version", type=int)
    args = parser.parse_args(argv)
    model_dir = args.repo / args.name
    if not model_dir.is_dir():
        print(f"compat: no model {model_dir}; run `make export` first", file=sys.stderr)
        return 1
    version = args.version or newest_version(model_dir)
    try:
        check_classifier(model_dir / str(version))
        with np.load(model_dir / str(version) / "expected_io.npz") as data:
            height, width = data["image"].shape[1:3]
        check_preprocess(args.repo / f"{args.name}_preprocess" / str(version), height, width)
        explain = args.repo / f"{args.name}_explain" / str(version)
        if explain.is_dir():  # Repositories exported before medcnn_explain have none.
            check_explain(explain)
        if (model_dir / str(version) / "model.onnx").is_file():
            # Current Triton's runtime, for the onnx-gpu/onnx-cpu configs.
            from check_onnx import check_onnx

            check_onnx(model_dir / str(version))
    except SystemExit as exc:
        print(exc, file=sys.stderr)
        return 1
    except Exception as exc:  # Report any TF failure as one line, like Triton's load error.
        print(f"compat: {type(exc).__name__}: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    print(f"compat: {args.name} version {version} loads and matches under TF {tf.__version__}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
