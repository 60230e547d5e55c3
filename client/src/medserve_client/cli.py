"""The ``medserve-client`` command: health, model info and classification from a shell.

Usage::

    medserve-client health --url 127.0.0.1:8001
    medserve-client info --json
    medserve-client classify chest.png ct.dcm --top-k 2 --json
    medserve-client --url http://127.0.0.1:8000 classify scans/*.png
    medserve-client --url dns:///triton-grpc.medserve.svc.cluster.local:8001 classify a.png
    medserve-client explain scan.dcm --out overlay.png          # Grad-CAM, supportive only
    medserve-client explain a.png b.dcm --out-dir overlays/ --class lesion

Errors are one line on stderr and an exit status per error class (see
:mod:`medserve_client.exceptions`; the table every medserve command shares is
:class:`medserve_client.contract.ExitStatus`), never a traceback: ``health``
exits 0 when the model is ready, 3 when no server answers, 4 when the server
answers but the model is not ready. The bearer token is
read from ``--token`` or the ``MEDSERVE_TOKEN`` environment variable.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

from medserve_client._client import Client
from medserve_client._errors import InvalidInputError, ModelNotReadyError, ServerUnavailableError
from medserve_client._exit_status import ExitStatus, run_command
from medserve_client._models import DicomSource, Prediction, Window
from medserve_client._targets import LB_POLICIES
from medserve_client.preprocessing import is_dicom

log = logging.getLogger("medserve_client")

#: Where the CLI calls without --url or $MEDSERVE_URL: Triton's own gRPC port on
#: this machine, where `make serve` (and the demo's closing command) serve.
DEFAULT_URL = "127.0.0.1:8001"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(
        prog="medserve-client", description="Call a medserve classifier served by Triton."
    )
    parser.add_argument(
        "--url",
        default=os.environ.get("MEDSERVE_URL", DEFAULT_URL),
        help="host:port or grpc://, grpcs://, http://, https:// URL, or a gRPC target "
        "balanced per request: dns:///HOST:PORT, ipv4:ADDR:PORT,ADDR:PORT "
        f"(default: $MEDSERVE_URL or {DEFAULT_URL})",
    )
    parser.add_argument(
        "--load-balancing",
        choices=LB_POLICIES,
        default=None,
        help="gRPC policy over the servers the URL resolves to "
        "(default: round_robin for dns:, ipv4:, ipv6: targets)",
    )
    parser.add_argument(
        "--protocol",
        choices=("grpc", "http"),
        default=None,
        help="protocol when the URL has no scheme (default grpc)",
    )
    parser.add_argument("--model", default="medcnn", help="model name (default medcnn)")
    parser.add_argument("--model-version", default=None, help="pin a model version")
    parser.add_argument("--timeout-s", type=float, default=30.0, help="deadline per call")
    parser.add_argument(
        "--token",
        default=os.environ.get("MEDSERVE_TOKEN"),
        help="bearer token (default: $MEDSERVE_TOKEN)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    health = commands.add_parser("health", help="is the server up and the model ready?")
    health.add_argument("--json", action="store_true", help="print JSON")
    info = commands.add_parser("info", help="the model's inputs, labels and batch limit")
    info.add_argument("--json", action="store_true", help="print JSON")
    classify = commands.add_parser("classify", help="classify image or DICOM files")
    classify.add_argument("paths", nargs="+", metavar="PATH", help="PNG, JPEG, DICOM... files")
    classify.add_argument("--top-k", type=int, default=1, help="labels per file (default 1)")
    classify.add_argument("--json", action="store_true", help="one JSON object per line")
    classify.add_argument(
        "--encoded", action="store_true", help="send the file bytes; the server decodes and resizes"
    )
    classify.add_argument(
        "--frame",
        type=int,
        default=None,
        help="frame of multi-frame DICOM (default: the middle one)",
    )
    classify.add_argument(
        "--window", default=None, metavar="CENTER,WIDTH", help="DICOM window override, e.g. 40,400"
    )
    explain = commands.add_parser(
        "explain", help="Grad-CAM heatmap overlays (supportive only, not a diagnosis)"
    )
    explain.add_argument("paths", nargs="+", metavar="PATH", help="PNG, JPEG, DICOM... files")
    where = explain.add_mutually_exclusive_group()
    where.add_argument("--out", type=Path, default=None, help="overlay PNG (one input only)")
    where.add_argument(
        "--out-dir",
        type=Path,
        default=None,
        help="folder for <name>.overlay.png per input (default: beside each input)",
    )
    explain.add_argument(
        "--class",
        dest="class_name",
        default=None,
        metavar="LABEL|INDEX",
        help="class to explain (default: the predicted class)",
    )
    explain.add_argument("--json", action="store_true", help="one JSON object per line")
    explain.add_argument("--frame", type=int, default=None, help="frame of multi-frame DICOM")
    explain.add_argument(
        "--window", default=None, metavar="CENTER,WIDTH", help="DICOM window override, e.g. 40,400"
    )
    return parser


def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None) -> int:
    """Run the CLI; returns the process exit status."""
    out = stdout or sys.stdout
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    return run_command(lambda: _run(args, out), prog="medserve-client")


def _run(args: argparse.Namespace, out: TextIO) -> int:
    with Client(
        args.url,
        model=args.model,
        version=args.model_version,
        protocol=args.protocol,
        timeout_s=args.timeout_s,
        bearer_token=args.token,
        load_balancing=args.load_balancing,
        send_encoded=getattr(args, "encoded", False),
    ) as client:
        if args.command == "health":
            return _health(client, args, out)
        if args.command == "info":
            return _info(client, args, out)
        if args.command == "explain":
            return _explain(client, args, out)
        return _classify(client, args, out)


def _health(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    """Print the state; the status says why not ready (3: no server, 4: no model)."""
    try:
        client.check_ready()
    except (ServerUnavailableError, ModelNotReadyError) as exc:
        ready, status, reason = False, exc.exit_code, str(exc)
    else:
        ready, status, reason = True, ExitStatus.OK, ""
    if args.json:
        payload = {"url": client.endpoint.display_url, "model": client.model, "ready": ready}
        print(json.dumps(payload if ready else {**payload, "error": reason}), file=out)
    else:
        state = "ready" if ready else "NOT ready"
        print(f"{client.endpoint.display_url} model {client.model}: {state}", file=out)
    if not ready:
        print(f"medserve-client: error: {reason}", file=sys.stderr)
    return int(status)


def _info(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    info = client.model_info()
    if args.json:
        print(json.dumps(asdict(info), indent=2), file=out)
        return 0
    height, width, channels = info.input_shape
    lines = [
        f"model        {info.name} (version {info.version or '-'}; platform {info.platform})",
        f"input        {info.input_name} {info.input_datatype} [{height}, {width}, {channels}]",
        f"output       {info.output_name} [{info.num_classes}]",
        f"labels       {', '.join(info.labels)}",
        f"max batch    {info.max_batch_size}",
    ]
    print("\n".join(lines), file=out)
    return 0


def _classify(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    inputs = _inputs(args)
    predictions = client.classify(inputs, top_k=args.top_k)
    for path, prediction in zip(args.paths, predictions, strict=True):
        print(_format(path, prediction, as_json=args.json), file=out)
    return 0


def _inputs(args: argparse.Namespace) -> list[Any]:
    """The paths, wrapped in DicomSource where a frame or window applies to a DICOM file."""
    window = _parse_window(args.window)
    inputs: list[Any] = []
    for path in args.paths:
        if (args.frame is not None or window is not None) and is_dicom(path):
            inputs.append(DicomSource(path, frame=args.frame, window=window))
            continue
        inputs.append(path)
    return inputs


def _explain(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    """Explain each file on its own: a file that cannot be read fails alone."""
    if args.out is not None and len(args.paths) != 1:
        raise InvalidInputError("--out takes one input; use --out-dir for several")
    class_index: int | str | None = args.class_name
    if isinstance(class_index, str) and class_index.lstrip("-").isdigit():
        class_index = int(class_index)
    status = 0
    for path, item in zip(args.paths, _inputs(args), strict=True):
        try:
            explanation = client.explain(item, class_index=class_index)[0]
        except InvalidInputError as exc:
            if "class" in str(exc) and "does not exist" in str(exc):
                raise  # The same for every file: stop at once.
            print(f"medserve-client: error: {exc}", file=sys.stderr)
            status = max(status, exc.exit_code)
            continue
        target = args.out or _overlay_path(Path(path), args.out_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        explanation.overlay.save(target, format="PNG")
        prediction = explanation.prediction
        if args.json:
            record = {
                "path": path,
                "overlay": str(target),
                "explained": explanation.label,
                "label": prediction.label,
                "score": prediction.score,
                "model": prediction.model_name,
                "version": prediction.model_version,
                "note": explanation.note,
            }
            print(json.dumps(record), file=out)
        else:
            print(
                f"{path}\t{prediction.label}={prediction.score:.4f}\theatmap of "
                f"{explanation.label!r} -> {target}\t({explanation.note})",
                file=out,
            )
    return status


def _overlay_path(path: Path, out_dir: Path | None) -> Path:
    name = f"{path.stem}.overlay.png"
    return (out_dir / name) if out_dir is not None else path.with_name(name)


def _parse_window(text: str | None) -> Window | None:
    if text is None:
        return None
    try:
        center, width = (float(part) for part in text.split(","))
    except ValueError as exc:
        raise InvalidInputError(
            f"--window must be CENTER,WIDTH (e.g. 40,400), got {text!r}"
        ) from exc
    return Window(center=center, width=width)


def _format(path: str, prediction: Prediction, *, as_json: bool) -> str:
    if as_json:
        return json.dumps(
            {
                "path": path,
                "label": prediction.label,
                "score": prediction.score,
                "top_k": [{"label": label, "score": score} for label, score in prediction.top_k],
                "model": prediction.model_name,
                "version": prediction.model_version,
                "latency_ms": round(prediction.latency_ms, 3),
            }
        )
    ranked = "  ".join(f"{label}={score:.4f}" for label, score in prediction.top_k)
    return f"{path}\t{ranked}"


if __name__ == "__main__":
    sys.exit(main())
