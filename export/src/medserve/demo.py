"""The end-to-end demo behind ``make demo``: train, export, serve, classify, measure.

Usage::

    python -m medserve.demo                       # what `make demo` runs
    python -m medserve.demo --burst-s 30 --concurrency 32

Steps, each printed as it happens:

1. train the reference CNN on the synthetic set at 224x224 (reused when
   nothing that decides the training changed) and print its calibration
   (the temperature, ECE and Brier score before and after);
2. measure the explanations (pointing game and sanity check on held-out
   synthetic lesions, :mod:`medserve.explain.demo_steps`; reused when fresh);
3. export it into the model repository with its model card (which carries
   the figures of steps 1 and 2) and verify it (skipped when the newest
   version already holds this training run; verified either way);
4. start the real ``tritonserver`` on the repository (:class:`LocalTriton`);
5. classify a generated PNG and JPEG of each class and pydicom's real
   ``CT_small.dcm`` and ``MR_small.dcm`` through the client library, and
   explain one lesion scan through ``medcnn_explain`` (an overlay PNG);
6. run a concurrent burst and report throughput, p50/p99 latency and the
   batching ratio (inferences per model execution, from Triton's statistics
   diffed over the burst); then stop the server.

This is the one export-side module that calls the client (``medserve-client``,
a dependency of ``medserve``), the way an application would; it uses the
client's public API only and no helper of the CLI.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medserve.errors import MedServeError, VerificationError
from medserve_client import contract

log = logging.getLogger(__name__)

DEFAULT_WORK = Path("work")
DEFAULT_REPO = Path("model_repository")
MODEL_NAME = "medcnn"
DICOM_SAMPLES = ("CT_small.dcm", "MR_small.dcm")
STEPS = 6


def build_parser() -> argparse.ArgumentParser:
    """The demo's flags (all optional)."""
    parser = argparse.ArgumentParser(prog="python -m medserve.demo", description=__doc__)
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="scratch folder")
    parser.add_argument("--repo", type=Path, default=DEFAULT_REPO, help="model repository")
    parser.add_argument("--burst-s", type=float, default=10.0, help="length of the burst")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight")
    parser.add_argument("--retrain", action="store_true", help="train even if reusable")
    return parser


def step(number: int, text: str) -> None:
    """Print a step heading."""
    print(f"\n[{number}/{STEPS}] {text}", flush=True)


def train_model(work: Path, *, retrain: bool) -> Any:
    """Train (or reuse) the reference CNN on the synthetic set."""
    from medserve.training import TrainConfig, train

    result = train(TrainConfig(output=work / "model", retrain=retrain))
    metrics = result.record.get("metrics", {})
    state = (
        "reused the model trained earlier with the same data and settings"
        if result.reused
        else "trained"
    )
    print(
        f"  {state}: {result.model_path}\n"
        f"  validation accuracy {metrics.get('val_accuracy', float('nan')):.3f}, "
        f"ROC AUC {metrics.get('val_roc_auc', float('nan')):.3f}"
    )
    print(calibration_line(result.record, result.model_path.parent))
    return result


def calibration_line(record: dict[str, Any], training_dir: Path) -> str:
    """The calibration figure of a ``training.json``: T, and ECE / Brier before and after."""
    calibration = record.get("calibration")
    if not calibration:
        return "  calibration: not measured (training.json has no calibration section)"
    before, after = calibration["before"], calibration["after"]
    state = "applied in the served graph" if calibration["applied"] else "not applied (T = 1 kept)"
    return (
        f"  calibration on {calibration['samples']} validation images: "
        f"T = {calibration['temperature']:.3f}, {state}\n"
        f"    ECE (15 bins) {before['ece']:.4f} -> {after['ece']:.4f}, "
        f"Brier {before['brier']:.4f} -> {after['brier']:.4f}; "
        f"reliability diagram {training_dir / calibration['reliability_diagram']}"
    )


def export_model_once(trained: Any, repo: Path, explanation: dict[str, Any] | None = None) -> int:
    """Export the trained model unless the newest version is already this run; verify.

    Returns:
        The version that will be served.
    """
    from medserve.cli.export import resolve_labels
    from medserve.exporter import export_model
    from medserve.model import load_classifier, model_image_size
    from medserve.model_card import read_model_card, update_model_card
    from medserve.model_card_render import EXPLANATION_KEY, write_card_markdown
    from medserve.repository import existing_versions
    from medserve.spec import ModelSpec
    from medserve.verify import verify_repository

    run = trained.record.get("run_fingerprint")
    versions = existing_versions(repo / MODEL_NAME) if (repo / MODEL_NAME).is_dir() else []
    if versions and run is not None:
        newest = max(versions)
        try:
            card = read_model_card(repo / MODEL_NAME / str(newest))
        except MedServeError:
            card = {}
        explain_version = repo / contract.explain_model(MODEL_NAME) / str(newest)
        if card.get("training_run") == run and explain_version.is_dir():
            # The figures measured now, rendered the way this medserve renders.
            if explanation is not None and card.get(EXPLANATION_KEY) != explanation:
                update_model_card(repo / MODEL_NAME / str(newest), {EXPLANATION_KEY: explanation})
            write_card_markdown(repo / MODEL_NAME / str(newest))
            try:
                report = verify_repository(repo, model_name=MODEL_NAME, version=newest)
            except VerificationError as exc:
                # Same weights, but written by an older medserve (e.g. before
                # the decoder's pixel cap): export them again as a new version.
                print(f"  version {newest} holds this model but fails verify ({exc}); re-export")
            else:
                checks = len(report.checks)
                print(
                    f"  version {newest} already holds this model; verify: {checks} checks passed"
                )
                return newest

    model = load_classifier(trained.model_path)
    labels = resolve_labels(None, None, trained.record, trained.model_path)
    spec = ModelSpec(name=MODEL_NAME, labels=labels, image_size=model_image_size(model))
    result = export_model(
        model,
        repo,
        spec,
        training_summary=trained.record,
        explanation=explanation,
        export_inputs=_cli_export_inputs(trained.model_path, repo, labels),
    )
    print(
        f"  exported {MODEL_NAME} version {result.version} "
        f"(+ {result.preprocess_dir.name}, {result.ensemble_dir.name}, {result.explain_dir.name}) "
        f"to {repo}\n"
        f"  verify: {len(result.report.checks)} checks passed"
    )
    return result.version


def _cli_export_inputs(model_path: Path, repo: Path, labels: tuple[str, ...]) -> dict[str, Any]:
    """The record ``medserve export MODEL --repo REPO --name medcnn`` (``make export``) makes.

    The demo exports with the CLI's defaults; recording what that command
    would, ``make export`` of the same model afterwards writes nothing.
    """
    from medserve.cli import build_parser
    from medserve.cli.export import export_inputs_of

    argv = ["export", str(model_path), "--repo", str(repo), "--name", MODEL_NAME]
    return export_inputs_of(build_parser()[0].parse_args(argv), labels)


def sample_inputs(work: Path) -> list[Path]:
    """A generated PNG and JPEG of each class, and pydicom's real CT and MR files."""
    from pydicom.data import get_testdata_file

    from medserve.data import write_synthetic_folder

    folder = work / "samples"
    # Formats alternate per image: two per class give one PNG and one JPEG each.
    write_synthetic_folder(folder, 2, (224, 224), seed=2026, formats=("png", "jpeg"))
    images = sorted(p for p in folder.rglob("*") if p.is_file())
    dicoms = [Path(str(get_testdata_file(name))) for name in DICOM_SAMPLES]
    return images + dicoms


def classify_samples(client: Any, paths: Sequence[Path], work: Path) -> None:
    """Classify each sample and print label, score and latency."""
    for path in paths:
        shown = path.relative_to(work) if path.is_relative_to(work) else Path("pydicom") / path.name
        prediction = client.classify(path, top_k=2)[0]
        print(
            f"  {shown!s:<34} -> {prediction.label:<8} score {prediction.score:.3f}"
            f"   {prediction.latency_ms:6.1f} ms"
        )
    print("  (the DICOM files are real CT/MR slices; the demo model only knows synthetic lesions)")


def burst(client: Any, stats_client: Any, *, duration_s: float, concurrency: int) -> None:
    """Keep ``concurrency`` single-image requests in flight for ``duration_s``; report."""
    from medserve.data import generate_synthetic

    pool, _labels, _names = generate_synthetic(8, (224, 224), seed=7)
    deadline = time.monotonic() + duration_s

    def until_deadline() -> Iterator[np.ndarray]:
        for image in itertools.cycle(pool):
            if time.monotonic() >= deadline:
                return
            yield image

    window = contract.StatsWindow.open(stats_client, MODEL_NAME)
    started = time.monotonic()
    latencies_ms = [
        p.latency_ms for p in client.classify_many(until_deadline(), concurrency=concurrency)
    ]
    elapsed_s = time.monotonic() - started
    counted = window.close(requests=len(latencies_ms))
    inferences, executions = counted.inferences, counted.executions
    p50, p99 = np.percentile(latencies_ms, [50, 99])
    print(
        f"  {len(latencies_ms)} images in {elapsed_s:.1f} s at concurrency {concurrency}: "
        f"{len(latencies_ms) / elapsed_s:.1f} images/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms\n"
        f"  server: {inferences} inferences in {executions} executions "
        f"= {inferences / max(executions, 1):.2f} images per batch (dynamic batching)"
    )


def run(args: argparse.Namespace) -> int:
    """Run the six steps; returns the exit status."""
    import tritonclient.grpc as grpcclient

    from medserve.explain.demo_steps import explain_sample, print_explanation_quality
    from medserve.local_triton import LocalTriton
    from medserve.tf_logging import quiet_tensorflow
    from medserve_client import Client

    quiet_tensorflow()
    work: Path = args.work
    work.mkdir(parents=True, exist_ok=True)
    step(1, "train the reference CNN (3 conv blocks 32/64/128, dense 128) on synthetic scans")
    trained = train_model(work, retrain=args.retrain)
    # Measured before the export, so the model card carries the figures.
    step(2, "explanation quality: Grad-CAM on held-out synthetic lesions (in-process)")
    explanation = print_explanation_quality(trained)
    step(3, f"export a Triton model repository to {args.repo} and verify it")
    export_model_once(trained, args.repo, explanation)
    step(4, "start the real tritonserver (nvidia-pytriton wheel, CPU, Python backend)")
    started = time.monotonic()
    with LocalTriton(args.repo, log_path=work / "tritonserver.log") as server:
        print(
            f"  ready in {time.monotonic() - started:.1f} s: gRPC {server.grpc_url}, "
            f"HTTP {server.http_url}, metrics {server.metrics_url}; log {server.log_path}"
        )
        with Client(server.grpc_url, model=MODEL_NAME) as client:
            info = client.model_info()
            print(
                f"  serving {info.name} v{info.version}: input {info.input_name} "
                f"{info.input_datatype}{list(info.input_shape)}, labels {list(info.labels)}, "
                f"max batch {info.max_batch_size}"
            )
            step(5, "classify real files through the client (PNG, JPEG, DICOM); explain one")
            samples = sample_inputs(work)
            classify_samples(client, samples, work)
            explain_sample(client, next(p for p in samples if p.stem.startswith("lesion")), work)
            step(6, f"burst: {args.concurrency} requests in flight for {args.burst_s:.0f} s")
            stats_client = grpcclient.InferenceServerClient(server.grpc_url)
            try:
                burst(client, stats_client, duration_s=args.burst_s, concurrency=args.concurrency)
            finally:
                stats_client.close()
    print(f"\nserver stopped. Serve it yourself: {serve_command(args.repo)}")
    print(f"  then, in another shell: {_bin_dir()}/medserve-client health")
    return 0


# Triton's standard HTTP and metrics ports, beside the client's default gRPC URL.
_HTTP_PORT = 8000
_METRICS_PORT = 8002


def serve_command(repo: Path) -> str:
    """The ``medserve serve`` command that serves ``repo`` where the client's defaults call.

    ``medserve serve`` alone picks free ports; ``medserve-client`` and
    ``Client`` without a URL call ``medserve_client.cli.DEFAULT_URL``.
    """
    from medserve_client.cli import DEFAULT_URL

    host, _, grpc_port = DEFAULT_URL.rpartition(":")
    return (
        f"{_bin_dir()}/medserve serve {repo} --host {host} --grpc-port {grpc_port} "
        f"--http-port {_HTTP_PORT} --metrics-port {_METRICS_PORT}"
    )


def _bin_dir() -> str:
    """Where this Python's commands are, relative to the working directory when inside it."""
    scripts = Path(sys.executable).parent
    try:
        return str(scripts.relative_to(Path.cwd()))
    except ValueError:
        return str(scripts)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m medserve.demo``."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # The exit-status rule of every medserve command: a client error keeps its
    # own status (3: the server went away), a bad flag or file exits 2.
    return contract.run_command(lambda: run(args), prog="demo", errors=(MedServeError,))


if __name__ == "__main__":
    sys.exit(main())
