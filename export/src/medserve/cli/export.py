"""``medserve export``: a Keras model file becomes a verified Triton model repository.

Usage::

    medserve export work/model/model.keras --repo model_repository
    medserve export my.keras --repo model_repository --labels normal,pneumonia --tensorrt-fp16
    medserve export my.keras --repo model_repository --version 3 --force
    medserve export my.keras --repo model_repository --formats savedmodel   # no model.onnx

Exporting again what the newest version was exported from (the same model
file, ``training.json``, labels and options) writes nothing and says so;
``--force`` needs ``--version``.

Labels come from ``--labels``, ``--labels-file`` or the ``training.json`` that
``medserve train`` writes next to the model, in that order. ``training.json``
also supplies the class counts and validation metrics of the model card.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from medserve.errors import UsageError
from medserve.spec import DEFAULT_MAX_PIXELS
from medserve.tf_logging import quiet_tensorflow

log = logging.getLogger(__name__)

TRAINING_SUMMARY = "training.json"


def add_parser(subparsers: Any) -> None:
    """Register ``export`` and its flags."""
    parser = subparsers.add_parser(
        "export",
        help="export a Keras model into a Triton model repository, then verify it",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument("model", type=Path, metavar="MODEL.keras", help="Keras model file")
    parser.add_argument("--repo", type=Path, required=True, help="model repository directory")
    parser.add_argument("--name", default="medcnn", help="Triton model name (default: medcnn)")
    labels = parser.add_mutually_exclusive_group()
    labels.add_argument("--labels", help="comma-separated class names in output order")
    labels.add_argument("--labels-file", type=Path, help="file with one class name per line")
    parser.add_argument("--version", type=int, help="version to write (default: next free)")
    parser.add_argument("--force", action="store_true", help="replace an existing --version")
    parser.add_argument("--max-batch-size", type=int, default=64, help="default: 64")
    parser.add_argument(
        "--max-queue-delay-us", type=int, default=1000, help="dynamic batcher delay (default 1000)"
    )
    parser.add_argument(
        "--max-queue-size", type=int, default=1024, help="requests queued before rejecting"
    )
    parser.add_argument(
        "--queue-timeout-us",
        type=int,
        default=5_000_000,
        help="reject a request that waited this long in the queue (default 5 s)",
    )
    parser.add_argument(
        "--tensorrt-fp16", action="store_true", help="enable TF-TRT FP16 in config.pbtxt (GPU)"
    )
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        help=(
            "largest image (width x height) the server-side decoders accept; baked into the "
            "decoder graph and recorded as its config parameter max_pixels (default: %(default)s)"
        ),
    )
    parser.add_argument(
        "--formats",
        default="savedmodel,onnx",
        help="classifier artifacts: savedmodel,onnx (default) or savedmodel alone; "
        "the onnx-gpu/onnx-cpu configs come with onnx",
    )
    parser.add_argument(
        "--trt-cache-path",
        default=None,
        help="writable directory for TensorRT engines under onnx-gpu (default /tmp/tensorrt-cache)",
    )


def run(args: argparse.Namespace) -> int:
    """Export, verify, and print one line per passed check.

    Writes nothing when the newest version was exported from the same model
    file, side files and options (it is verified instead).

    Raises:
        UsageError: Bad input, or ``--force`` without ``--version``.
    """
    if args.force and args.version is None:
        raise UsageError(
            "--force replaces the version given with --version, and none was given "
            "(without --version the export writes the next free version and replaces "
            "nothing): add --version N to replace version N, or drop --force"
        )
    quiet_tensorflow()
    from medserve.exporter import export_model
    from medserve.model import load_classifier, model_image_size
    from medserve.model_config import ServingOptions
    from medserve.spec import ModelSpec

    summary = read_training_summary(args.model)
    check_summary_describes(args.model, summary)
    explanation = read_explanation(args.model, summary)
    labels = resolve_labels(args.labels, args.labels_file, summary, args.model)
    inputs = export_inputs_of(args, labels)
    if args.version is None and _report_unchanged(args, inputs):
        return 0
    model = load_classifier(args.model)
    spec = ModelSpec(
        name=args.name,
        labels=labels,
        image_size=model_image_size(model),
        max_batch_size=args.max_batch_size,
        max_pixels=args.max_pixels,
    )
    options = ServingOptions(
        max_queue_delay_us=args.max_queue_delay_us,
        max_queue_size=args.max_queue_size,
        queue_timeout_us=args.queue_timeout_us,
        tensorrt_fp16=args.tensorrt_fp16,
        **({"trt_cache_path": args.trt_cache_path} if args.trt_cache_path else {}),
    )
    formats = tuple(name.strip() for name in args.formats.split(",") if name.strip())
    result = export_model(
        model,
        args.repo,
        spec,
        version=args.version,
        force=args.force,
        training_summary=summary,
        explanation=explanation,
        options=options,
        formats=formats,
        export_inputs=inputs,
    )
    for line in result.report.lines():
        print(line)
    print(
        f"exported {spec.name} version {result.version} to {result.version_dir} "
        f"(+ {result.preprocess_dir.name}, {result.ensemble_dir.name})"
    )
    return 0


# Arguments that say where to write or what to read, not what is written: every
# other flag (today's and any added later) is an option of the export.
_NOT_OPTIONS = frozenset(
    {"command", "verbose", "model", "repo", "version", "force", "labels", "labels_file"}
)


def export_inputs_of(args: argparse.Namespace, labels: tuple[str, ...]) -> dict[str, Any]:
    """What an export with these arguments is made from (recorded in its model card).

    The demo records the same for its export, so ``make export`` after
    ``make demo`` finds the model unchanged.

    Raises:
        UsageError: The model file does not exist.
    """
    from medserve.export_inputs import export_inputs

    if not args.model.is_file():
        raise UsageError(f"model file {args.model} does not exist")
    options = {
        key: str(value) if isinstance(value, Path) else value
        for key, value in vars(args).items()
        if key not in _NOT_OPTIONS
    }
    return export_inputs(args.model, options=options, labels=labels)


def _report_unchanged(args: argparse.Namespace, inputs: dict[str, Any]) -> bool:
    """Verify and report the newest version if it holds this very export; False if none does."""
    from medserve.errors import VerificationError
    from medserve.export_inputs import unchanged_version
    from medserve.verify import verify_repository

    version = unchanged_version(args.repo / args.name, inputs)
    if version is None:
        return False
    try:
        report = verify_repository(args.repo, model_name=args.name, version=version)
    except VerificationError as exc:
        log.warning(
            "version %d holds this export but fails verify (%s); exporting again", version, exc
        )
        return False
    for line in report.lines():
        print(line)
    print(
        f"unchanged: {args.name} version {version} in {args.repo} was exported from this "
        f"model file (sha256 {inputs['model_sha256'][:12]}) with the same labels and "
        "options; nothing written. Change an option to export a new version, or pass "
        f"--version {version} --force to write it again."
    )
    return True


def read_training_summary(model_path: Path) -> dict[str, Any] | None:
    """Read ``training.json`` next to the model file, if there is one.

    Raises:
        UsageError: The file exists but is not a JSON object.
    """
    path = model_path.parent / TRAINING_SUMMARY
    if not path.is_file():
        return None
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path} is not readable JSON ({exc}); fix or delete it") from exc
    if not isinstance(summary, dict):
        raise UsageError(f"{path} must hold a JSON object, as `medserve train` writes it")
    return summary


def check_summary_describes(model_path: Path, summary: dict[str, Any] | None) -> None:
    """Refuse a ``training.json`` whose temperature was fitted for another model file.

    Raises:
        UsageError: The record carries a calibration and the sha256 of a
            different model file.
    """
    from medserve.repository import sha256_file

    recorded = (summary or {}).get("model_sha256")
    if not (summary or {}).get("calibration") or not recorded or not model_path.is_file():
        return
    if sha256_file(model_path) != recorded:
        raise UsageError(
            f"{model_path.parent / TRAINING_SUMMARY} was written for another model file "
            f"(its model_sha256 differs from {model_path}), so its temperature and metrics do "
            "not describe this model; train it with `medserve train`, or export a copy from "
            "a folder without that training.json"
        )


def read_explanation(model_path: Path, summary: dict[str, Any] | None) -> dict[str, Any] | None:
    """``medserve evaluate``'s ``explanation.json`` next to the model, for the card.

    A report that names a different training run than ``training.json`` is
    stale (the model was retrained since) and is left out with a warning.

    Raises:
        UsageError: The file exists but is not readable JSON.
    """
    from medserve.explain.evaluation import EXPLANATION_FILENAME, read_explanation_report

    path = model_path.parent / EXPLANATION_FILENAME
    report = read_explanation_report(path)
    run = (summary or {}).get("run_fingerprint")
    if report is not None and report.get("training_run") not in (None, run):
        log.warning(
            "%s was measured for another training run; the model card leaves it out "
            "(run `medserve evaluate %s` again)",
            path,
            model_path,
        )
        return None
    return report


def resolve_labels(
    labels: str | None,
    labels_file: Path | None,
    summary: dict[str, Any] | None,
    model_path: Path,
) -> tuple[str, ...]:
    """Pick the labels from the flags, else from ``training.json``.

    Raises:
        UsageError: No source of labels, an unreadable labels file, or bad labels.
    """
    if labels is not None:
        return tuple(label.strip() for label in labels.split(","))
    if labels_file is not None:
        try:
            lines = labels_file.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise UsageError(f"cannot read --labels-file {labels_file}: {exc.strerror}") from exc
        while lines and not lines[-1].strip():
            lines.pop()
        return tuple(line.strip() for line in lines)
    if summary is not None:
        found = summary.get("labels")
        if not isinstance(found, list) or not all(isinstance(x, str) for x in found):
            raise UsageError(
                f"{model_path.parent / TRAINING_SUMMARY}: 'labels' must be a list of strings"
            )
        return tuple(found)
    raise UsageError(
        f"no labels for {model_path}: pass --labels a,b or --labels-file FILE "
        f"(a model trained by `medserve train` has them in {TRAINING_SUMMARY})"
    )
