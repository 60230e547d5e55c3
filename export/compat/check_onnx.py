"""Load an exported ``model.onnx`` with the onnxruntime of current Triton and compare outputs.

Usage (``check_savedmodel.py``, which ``make compat`` runs, calls it)::

    from check_onnx import check_onnx
    check_onnx(Path("model_repository/medcnn/3"))

Runs in ``.venv-compat``, which pins ``onnxruntime==1.28.0``: the ONNX Runtime
that Triton 26.08's onnxruntime backend is built with (server branch r26.08,
``build.py``: ``"ort_version": "1.28.0"``), the nearest release to 26.09 whose
version could be read from the Triton sources (the main branch tracking 26.09
had not moved past it), and installable from PyPI for Python 3.11 with
numpy<2. It imports nothing of ``medserve``. For one version it:

1. loads ``<name>/<v>/model.onnx`` in an onnxruntime session on the CPU provider
   and checks its input and output names and element types (uint8 in, float out);
2. runs the recorded batch (``expected_io.npz``, written at export from the
   Keras model) and compares within 1e-5;
3. prints which onnxruntime it used.

A failure raises ``SystemExit`` with a one-line reason.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

TOLERANCE = 1e-5


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
    print(
        f"ok  {path}: onnxruntime {ort.__version__} (the ONNX Runtime of Triton 26.08/26.09): "
        f"max |diff| {diff:.1e} <= {TOLERANCE}"
    )
