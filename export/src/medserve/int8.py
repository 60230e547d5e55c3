"""``model_int8.onnx``: ``model.onnx`` statically quantized, written only if it passes a gate.

Usage::

    data = Int8Data(calibration=train_set.images, validation=validation_set)
    section = write_int8_onnx(version_dir / ONNX_FILENAME, version_dir / INT8_FILENAME, data, spec)
    section["agreement"]["top1_agreement"]    # >= MIN_TOP1_AGREEMENT, or Int8RefusedError

How the file is made (onnxruntime.quantization, the route its documentation
gives for CNNs on CPU):

1. ``quant_pre_process``: ONNX shape inference and onnxruntime's basic graph
   optimisation (constant folding; the ``/255`` becomes ``*1/255``), which
   onnxruntime recommends before quantizing. Its symbolic shape inference is
   skipped: it serves transformer graphs with symbolic dims, this graph has
   one dynamic dim (batch), and it would need sympy.
2. ``quantize_static`` in QDQ format (QuantizeLinear/DequantizeLinear pairs
   that onnxruntime's CPU provider fuses into QLinearConv/QLinearMatMul),
   int8 weights per output channel, uint8 activations, ranges calibrated on
   training images as the training loaders prepared them (uint8, the served
   input; the graph casts and scales them itself).
3. The gate: on the validation split, top-1 must agree with FP32 on at least
   :data:`MIN_TOP1_AGREEMENT` of the images and the ROC AUC
   (:func:`medserve.metrics.roc_auc`, the card's metric) may drop by at most
   :data:`MAX_AUC_DROP`. Otherwise :class:`~medserve.errors.Int8RefusedError`.

Only :data:`QUANTIZED_OPS` are quantized: the convolutions with their ReLUs
and max-pools, where the compute is. The uint8 input's Cast and the scaling
stay float (the first QuantizeLinear sits after them, on [0, 1]), and so do
the dense layers and the tail (softmax and the temperature's log, scale and
softmax). Measured 2026-11-29 with onnxruntime 1.28 in one-off probes during
development (not a make target; speed as images per CPU-second on one thread,
so the shared machine's load does not enter; the agreement on the model
`make train` makes, 480 validation images):

- 224x224 reference CNN: FP32 98-100 images per CPU-second; Conv+MatMul
  alone 160-165 (every ReLU and max-pool then runs in float between a
  DequantizeLinear and a QuantizeLinear); Conv, Relu, MaxPool and MatMul
  202-205; Conv, Relu, MaxPool with the dense layers in float 198-200.
- The dense layers in INT8 flipped 2 of 480 top-1 decisions (agreement
  0.9958, inside the 0.995 gate by one image) with a mean probability
  difference of 0.0049; in float, none (agreement 1.0), mean 0.0003, largest
  0.0041. They are 2 % of the multiply-adds, so float costs 2 % of the speed
  and buys a fifteenth of the error: the gate holds with room to spare.

Calibration method, on the same model and op set: MinMax (256 images) and
Percentile 99.999 (64 images) both agreed on all 480, largest differences
0.0041 and 0.0036; Entropy gave exactly MinMax's ranges in every model
measured. MinMax is chosen: it keeps only each batch's min and max per
tensor, so every calibration image fits in memory, whereas onnxruntime's
histogram calibrators hold every intermediate tensor of every image (about
26 MB per image at 224x224) before binning.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medserve.errors import Int8RefusedError, UsageError
from medserve.metrics import accuracy, roc_auc
from medserve.onnx_loaders import onnx_opset, run_onnx_batched
from medserve.spec import ModelSpec

if TYPE_CHECKING:
    from medserve.data import LabelledImages

log = logging.getLogger(__name__)

# The gate of issue 13: top-1 agreement with FP32 and the largest ROC AUC drop.
MIN_TOP1_AGREEMENT = 0.995
MAX_AUC_DROP = 0.005
QUANTIZED_OPS = ("Conv", "Relu", "MaxPool")
# Chosen by measurement (see the module docstring).
CALIBRATION_METHOD = "MinMax"
CALIBRATION_NOTE = (
    "MinMax: as accurate as Percentile 99.999 and Entropy on the reference model measured "
    "(2026-11-29), with memory bounded by one batch whatever the number of images"
)
# Training images the ranges are calibrated on: spread over the training split.
DEFAULT_CALIBRATION_IMAGES = 256
# Images per calibration run. MinMax keeps only each batch's ReduceMin/ReduceMax
# per tensor, so memory stays small whatever the number of images.
_CALIBRATION_BATCH = 16


@dataclass(frozen=True)
class Int8Data:
    """The images an INT8 export is calibrated and gated on.

    Attributes:
        calibration: uint8 ``(N, H, W, 3)`` training images for the ranges.
        validation: The validation split: images and labels for the gate.
        source: How the images were found, for the model card.
    """

    calibration: np.ndarray
    validation: LabelledImages
    source: str = "the training run's training and validation splits"

    def __post_init__(self) -> None:
        if self.calibration.dtype != np.uint8 or self.calibration.ndim != 4:
            raise UsageError(
                f"INT8 calibration images must be uint8 (N, H, W, 3), got "
                f"{self.calibration.dtype} {self.calibration.shape}"
            )
        if len(self.calibration) == 0 or len(self.validation) == 0:
            raise UsageError("--int8 needs at least one calibration and one validation image")


def calibration_subset(images: np.ndarray, count: int = DEFAULT_CALIBRATION_IMAGES) -> np.ndarray:
    """Up to ``count`` of ``images``, evenly spread (the split is ordered by class)."""
    if count < 1:
        raise UsageError(f"--int8-calibration-images must be at least 1, got {count}")
    if len(images) <= count:
        return images
    return images[np.linspace(0, len(images) - 1, count).round().astype(int)]


def write_int8_onnx(
    fp32_path: Path, int8_path: Path, data: Int8Data, spec: ModelSpec
) -> dict[str, Any]:
    """Quantize ``fp32_path`` into ``int8_path`` and gate it on ``data.validation``.

    Returns:
        The model card's ``int8`` section: file, sha256, quantization settings,
        the gate's figures and bounds.

    Raises:
        Int8RefusedError: The gate failed; ``int8_path`` is removed again (the
            caller's staging directory is removed with it).
    """
    import onnxruntime

    _quantize(fp32_path, int8_path, data.calibration, spec)
    labels = data.validation.labels
    fp32 = _probabilities(fp32_path, data.validation.images, spec)
    int8 = _probabilities(int8_path, data.validation.images, spec)
    figures = agreement(labels, fp32, int8)
    try:
        check_gate(figures)
    except Int8RefusedError:
        int8_path.unlink(missing_ok=True)
        raise
    log.info(
        "INT8: top-1 agrees with FP32 on %.4f of %d validation images, ROC AUC %.4f -> %.4f",
        figures["top1_agreement"],
        figures["validation_images"],
        figures["fp32_roc_auc"],
        figures["int8_roc_auc"],
    )
    return {
        "file": int8_path.name,
        "sha256": hashlib.sha256(int8_path.read_bytes()).hexdigest(),
        "opset": onnx_opset(int8_path),
        "quantization": {
            "tool": f"onnxruntime.quantization.quantize_static {onnxruntime.__version__}",
            "format": "QDQ",
            "weights": "int8, per channel",
            "activations": "uint8",
            "quantized_ops": list(QUANTIZED_OPS),
            "pre_process": "quant_pre_process (ONNX shape inference, basic optimisation)",
            "calibration_method": CALIBRATION_METHOD,
            "calibration_note": CALIBRATION_NOTE,
            "calibration_images": len(data.calibration),
            "calibration_source": data.source,
        },
        "agreement": figures,
        "gate": {"min_top1_agreement": MIN_TOP1_AGREEMENT, "max_roc_auc_drop": MAX_AUC_DROP},
    }


def agreement(labels: np.ndarray, fp32: np.ndarray, int8: np.ndarray) -> dict[str, Any]:
    """Top-1 agreement of ``int8`` with ``fp32`` and the ROC AUC of each on ``labels``."""
    fp32_auc, int8_auc = roc_auc(labels, fp32), roc_auc(labels, int8)
    return {
        "validation_images": len(labels),
        # The FP32 decisions play the labels: the share of rows whose top-1 matches.
        "top1_agreement": accuracy(np.argmax(fp32, axis=1), int8),
        "fp32_roc_auc": fp32_auc,
        "int8_roc_auc": int8_auc,
        "roc_auc_drop": fp32_auc - int8_auc,
        "max_abs_probability_diff": float(np.max(np.abs(fp32 - int8))),
    }


def check_gate(figures: dict[str, Any]) -> None:
    """Refuse figures outside the bounds.

    Raises:
        Int8RefusedError: naming the figures, the bounds and what to do.
    """
    agree, drop = figures["top1_agreement"], figures["roc_auc_drop"]
    if agree >= MIN_TOP1_AGREEMENT and not math.isnan(drop) and drop <= MAX_AUC_DROP:
        return
    raise Int8RefusedError(
        f"the INT8 model was not written: on {figures['validation_images']} validation images "
        f"its top-1 agrees with FP32 on {agree:.2%} (at least {MIN_TOP1_AGREEMENT:.1%} needed) "
        f"and its ROC AUC is {figures['int8_roc_auc']:.4f} against FP32's "
        f"{figures['fp32_roc_auc']:.4f}, a drop of {drop:.4f} (at most {MAX_AUC_DROP} allowed). "
        "Nothing was exported. Serve the FP32 model (export without --int8), or calibrate on "
        "more training images (--int8-calibration-images) that look like what is served"
    )


def _quantize(fp32_path: Path, int8_path: Path, images: np.ndarray, spec: ModelSpec) -> None:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = (
                {spec.input_name: images[start : start + _CALIBRATION_BATCH]}
                for start in range(0, len(images), _CALIBRATION_BATCH)
            )

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._batches, None)

    with tempfile.TemporaryDirectory(prefix=".int8-", dir=int8_path.parent) as work:
        prepared = Path(work) / "prepared.onnx"
        with _quiet():
            quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
            quantize_static(
                str(prepared),
                str(int8_path),
                _Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                op_types_to_quantize=list(QUANTIZED_OPS),
                calibrate_method=getattr(CalibrationMethod, CALIBRATION_METHOD),
            )


def _probabilities(path: Path, images: np.ndarray, spec: ModelSpec) -> np.ndarray:
    return np.asarray(
        run_onnx_batched(path, spec.input_name, images, spec.output_name), dtype=np.float64
    )


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """onnxruntime.quantization logs progress at INFO on the root logger; keep it out of the CLI."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        root.setLevel(level)
