"""Load an exported ``model.onnx`` with the onnxruntime of current Triton and compare outputs.

Usage::

    .venv-compat/bin/python export/compat/check_onnx.py model_repository --name medcnn

Runs in ``.venv-compat``, which pins ``onnxruntime==1.28.0``: the ONNX Runtime
that Triton 26.08's onnxruntime backend is built with (server branch r26.08,
``build.py``: ``"ort_version": "1.28.0"``), the nearest release to 26.09 whose
version could be read from the Triton sources (the main branch tracking 26.09
had not moved past it), and installable from PyPI for Python 3.11 with
numpy<2. It imports nothing of ``medserve``. For the newest version (or
``--version``) it:

1. loads ``<name>/<v>/model.onnx`` in an onnxruntime session on the CPU provider
   and checks its input and output names and element types (uint8 in, float out);
2. runs the recorded batch (``expected_io.npz``, written at export from the
   Keras model) and compares within 1e-5;
3. prints which onnxruntime it used.

Exit status 0 when all pass, 1 with a one-line reason otherwise.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

TOLERANCE = 1e-5


def newest_version(model_dir: Path) -> int:
    versions = [int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()]
    if not versions:
        raise SystemExit(f"compat: {model_dir} has no version; run `make export` first")
    return max(versions)


def check_onnx(version_dir: Path) -> None:
    path = version_dir / "model.onnx"
    if not path.is_file():
        raise SystemExit(f"compat: {path} is missing (exported with --formats savedmodel?)")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs = {i.name: i.type for i in session.get_inputs()}
    outputs = {o.name: o.type for o in session.get_outputs()}
    if inputs != {"image": "tensor(uint8)"} or outputs != {"probabilities": "tensor(float)"}:
        raise SystemExit(f"compat: {path}: tensors are {inputs} -> {outputs}")
    with np.load(version_dir / "expected_io.npz", allow_pickle=False) as data:
        images, expected = data["image"], data["probabilities"]
    (got,) = session.run(["probabilities"], {"image": images})
    diff = float(np.max(np.abs(got.astype(np.float64) - expected)))
    if not diff <= TOLERANCE:
        raise SystemExit(f"compat: {path}: onnxruntime differs by {diff:.3g} > {TOLERANCE}")
    print(f"ok  {path}: onnxruntime {ort.__version__}: max |diff| {diff:.1e} <= {TOLERANCE}")


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
        check_onnx(model_dir / str(version))
    except SystemExit as exc:
        print(exc, file=sys.stderr)
        return 1
    except Exception as exc:  # Report any onnxruntime failure as one line, like Triton's.
        print(f"compat: {type(exc).__name__}: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    print(
        f"compat: {args.name} version {version} model.onnx loads and matches under "
        f"onnxruntime {ort.__version__} (the ONNX Runtime of Triton 26.08/26.09)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
