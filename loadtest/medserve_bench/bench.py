"""``make bench``: every variant measured in the same run, interleaved over rounds.

Usage::

    python -m medserve_bench.bench              # full: 3 rounds, 10 s per cell (about 17 minutes)
    python -m medserve_bench.bench --quick      # 1 round, 3 s per cell
    python -m medserve_bench.bench --repo model_repository --keras-model work/model/model.keras \\
        --concurrency 1,4,16,32 --compare-at 16 --rounds 3 --duration-s 10

One local Triton serves the exported model and its bench variants
(:mod:`medserve_bench.repo`: batching off, float32 input, the other local
runtime, INT8); the naive peer runs under gunicorn and the PyTriton peer
(:mod:`medserve_bench.pytriton_peer`) in its own process beside it. Each round
measures, in an order rotated from round to round so slow drift does not
favour one variant:

1. the in-process limit (:mod:`medserve_bench.inprocess`, its own process,
   servers idle) of each runtime at each batch size: the SavedModel under
   TensorFlow, ``model.onnx`` under onnxruntime and, when exported,
   ``model_int8.onnx``; the limit in the ratio is the best of them;
2. medserve through ``medserve_client`` at each ``--concurrency`` (batching on);
3. at ``--compare-at``: batching off, the other local runtime, INT8 served;
4. the naive peer at each ``--peer-concurrency``;
5. the PyTriton peer and medserve over the same raw gRPC load at each
   ``--pytriton-concurrency``;
6. payloads at ``--compare-at``: uint8, float32 and encoded JPEG tensors.

Triton serves the config ``tuned`` when ``medserve tune`` wrote one
(``configs/tuned.pbtxt``), else ``local``; ``--config-name`` chooses. The
PyTriton peer copies the served config.

Every cell is a closed loop (:mod:`medserve_bench.driver`) whose answers are
validated; Triton's statistics are diffed over each cell, and the CPU time of
the load generator (this process) and of the server's process tree is read at
the window's edges (:mod:`medserve_bench.cpu`), so each ratio comes with its
cause. Writes ``bench.json``, ``bench.md`` and ``bench.png`` under ``--out``;
``python -m medserve_bench.readme_table`` puts the summary into the READMEs.
Exits 1 if any request failed (numbers from wrong answers mean nothing), 0
otherwise, whether or not the ratios reach their targets (the table says which
do).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from medserve_bench import repo, sdk_speed
from medserve_bench.cells import Bench, Cell, Servers, cells_for
from medserve_bench.naive_peer import PeerServer, free_port
from medserve_bench.pytriton_peer import (
    PEER_SUFFIX,
    PyTritonPeer,
    describe,
    settings_from_config,
)
from medserve_bench.ratios import compute_ratios
from medserve_bench.report import aggregate, summarize_limit, write_outputs

log = logging.getLogger("loadtest.bench")

ROOT = Path(__file__).resolve().parents[2]

__all__ = ["Cell", "build_parser", "cells_for", "main", "run"]


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's command line."""
    p = argparse.ArgumentParser(
        prog="python -m medserve_bench.bench", description=__doc__.splitlines()[0]
    )
    p.add_argument("--quick", action="store_true", help="1 round, 3 s cells (make bench-quick)")
    p.add_argument("--repo", type=Path, default=ROOT / "model_repository")
    p.add_argument("--model", default="medcnn")
    p.add_argument("--keras-model", type=Path, default=ROOT / "work" / "model" / "model.keras")
    p.add_argument("--work", type=Path, default=ROOT / "work" / "bench")
    p.add_argument("--out", type=Path, default=None, help="default loadtest/results/bench[-quick]")
    p.add_argument("--rounds", type=int, default=None)
    p.add_argument("--duration-s", type=float, default=None, help="measured seconds per cell")
    p.add_argument("--warmup-s", type=float, default=None, help="unmeasured seconds per cell")
    p.add_argument("--concurrency", default="1,4,16,32", help="medserve's concurrencies")
    p.add_argument("--compare-at", type=int, default=16, help="concurrency of the ratios")
    p.add_argument("--peer-concurrency", default=None, help="naive peer (default 4,<compare-at>)")
    p.add_argument(
        "--pytriton-concurrency",
        default="16,32",
        help="PyTriton peer and medserve over raw gRPC ('' leaves the PyTriton peer out)",
    )
    p.add_argument("--limit-batch-sizes", default=None, help="default 1,4,8,16,32")
    p.add_argument("--limit-duration-s", type=float, default=None)
    p.add_argument(
        "--payloads",
        default="uint8,float32,encoded",
        help="payload cells to measure (float32 needs a bench-only export of the model)",
    )
    p.add_argument(
        "--sdk-images",
        type=int,
        default=None,
        help="images per variant per round of the SDK speed rows (default 480, quick 64; 0: none)",
    )
    p.add_argument("--peer-workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--pool-size", type=int, default=32)
    p.add_argument(
        "--config-name",
        default=None,
        help="config Triton serves (default: tuned when `medserve tune` wrote one, else local)",
    )
    return p


def apply_presets(args: argparse.Namespace) -> argparse.Namespace:
    """Fill unset durations from the full or the ``--quick`` preset."""
    # Full: about 16 cells x (10 + 2) s plus the limit (3 runtimes x 5 batch
    # sizes x 2 s) per round, 3 rounds: about 17 minutes with server start-up.
    quick = {"rounds": 1, "duration_s": 3.0, "warmup_s": 1.0, "limit_duration_s": 1.0,
             "limit_batch_sizes": "1,8,32", "sdk_images": 64}  # fmt: skip
    full = {"rounds": 3, "duration_s": 10.0, "warmup_s": 2.0, "limit_duration_s": 2.0,
            "limit_batch_sizes": "1,4,8,16,32", "sdk_images": 480}  # fmt: skip
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.peer_concurrency is None:
        args.peer_concurrency = ",".join(str(c) for c in sorted({4, args.compare_at}))
    if args.out is None:
        args.out = ROOT / "loadtest" / "results" / ("bench-quick" if args.quick else "bench")
    if args.config_name is None:
        args.config_name = served_config_name(args.repo, args.model)
    return args


def served_config_name(repo_dir: Path, model: str) -> str:
    """``tuned`` when ``medserve tune`` wrote ``configs/tuned.pbtxt``, else ``local``."""
    return "tuned" if (repo_dir / model / "configs" / "tuned.pbtxt").is_file() else "local"


def newest_artifacts(model_dir: Path) -> list[Path]:
    """``model.savedmodel`` and, if exported, ``model.onnx`` and ``model_int8.onnx`` of the
    newest version: every runtime the in-process limit measures."""
    version_dir = newest_version(model_dir)
    onnx = [version_dir / name for name in ("model.onnx", repo.INT8_ONNX_FILENAME)]
    return [version_dir / repo.SAVEDMODEL_DIRNAME, *(p for p in onnx if p.is_file())]


def newest_version(model_dir: Path) -> Path:
    """The newest version directory of a model."""
    versions = sorted((int(p.name) for p in model_dir.iterdir() if p.name.isdigit()), reverse=True)
    if not versions:
        raise FileNotFoundError(f"{model_dir} has no version")
    return model_dir / str(versions[0])


def measure_limit(args: argparse.Namespace, savedmodel: Path) -> dict[str, Any]:
    """Run :mod:`medserve_bench.inprocess` in its own process and return its JSON."""
    command = [
        sys.executable, "-m", "medserve_bench.inprocess", str(savedmodel),
        f"--batch-sizes={args.limit_batch_sizes}", f"--duration-s={args.limit_duration_s}",
    ]  # fmt: skip
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"in-process limit failed: {done.stderr[-2000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _spec(repo_dir: Path, model: str) -> tuple[tuple[str, ...], tuple[int, int]]:
    from medserve.spec import SPEC_FILENAME, ModelSpec

    spec = ModelSpec.read(repo_dir / model / SPEC_FILENAME)
    return spec.labels, spec.image_size


def _payloads(args: argparse.Namespace) -> list[str]:
    payloads = [p for p in args.payloads.split(",") if p]
    unknown = set(payloads) - {"uint8", "float32", "encoded"}
    if unknown:
        raise ValueError(f"unknown payloads {sorted(unknown)}")
    if _ints(args.pytriton_concurrency) and "uint8" not in payloads:
        payloads.insert(0, "uint8")  # The medserve side of the PyTriton comparison.
    return payloads


def run(args: argparse.Namespace) -> int:
    """Run the benchmark as ``args`` say; returns the exit status."""
    from medserve.local_triton import LocalTriton
    from medserve.triton_backend.threads import available_cpus

    if not args.keras_model.is_file():
        raise FileNotFoundError(f"no Keras model {args.keras_model} for the naive peer")
    args.out.mkdir(parents=True, exist_ok=True)
    labels, image_size = _spec(args.repo, args.model)
    payloads = _payloads(args)
    bench_repo = args.work / "repo"
    models = repo.write_bench_repo(
        args.repo,
        bench_repo,
        model=args.model,
        keras_model=args.keras_model if "float32" in payloads else None,
        config_name=args.config_name,
    )
    if models.encoded is None and "encoded" in payloads:
        payloads.remove("encoded")  # A repository exported without the ensemble.
    pytriton_at = _ints(args.pytriton_concurrency)
    other = models.other_runtime.removeprefix(args.model + "_") if models.other_runtime else None
    cells = cells_for(_ints(args.concurrency), args.compare_at, payloads,
                      peer=_ints(args.peer_concurrency), pytriton=pytriton_at,
                      other_runtime=other, int8=models.int8 is not None)  # fmt: skip
    artifacts = newest_artifacts(args.repo / args.model)
    limit_runs: list[list[dict[str, Any]]] = []
    started = time.time()
    with contextlib.ExitStack() as stack:
        peer = PeerServer(args.keras_model, workers=args.peer_workers, labels=labels,
                          log_path=args.out / "peer.log")  # fmt: skip
        stack.callback(peer.stop)
        peer.launch()  # Loads its model while Triton starts.
        pytriton, peer_settings = None, None
        if pytriton_at:
            # The same config medserve serves (local.pbtxt, or tuned.pbtxt after medserve tune).
            served = bench_repo / args.model / "configs" / f"{args.config_name}.pbtxt"
            version_dir = newest_version(bench_repo / args.model)
            peer_settings = describe(settings_from_config(served, version_dir, available_cpus()))
            pytriton = PyTritonPeer(served, version_dir, name=args.model + PEER_SUFFIX,
                                    log_path=args.out / "pytriton.log")  # fmt: skip
            stack.callback(pytriton.stop)
            pytriton.launch()
        server = stack.enter_context(
            LocalTriton(
                bench_repo,
                log_path=args.out / "tritonserver.log",
                config_name=args.config_name,
            )
        )
        try:
            peer.wait_ready()
        except RuntimeError as exc:
            # Most likely another process took the free port between the check
            # and gunicorn's bind (a shared machine): one more try on a new port.
            log.warning("naive peer failed to start (%s); retrying on another port", exc)
            peer.port = free_port()
            peer.launch()
            peer.wait_ready()
        if pytriton is not None:
            pytriton.wait_ready()
        servers = Servers(
            grpc_url=server.grpc_url, triton_pid=server.pid, peer_url=peer.url,
            peer_pid=peer.pid, pytriton_url=pytriton.grpc_url if pytriton else None,
            pytriton_model=pytriton.model if pytriton else None,
            pytriton_pid=pytriton.pid if pytriton else None,
        )  # fmt: skip
        bench = Bench(args, servers, models, labels, image_size)
        stack.callback(bench.close)
        bench.warm_up_peer()
        for rnd in range(args.rounds):
            # Each runtime in process, servers idle; the round's limit is the best.
            runs = [measure_limit(args, artifact) for artifact in artifacts]
            for run_ in runs:
                log.info("round %d in-process limit %s %.1f images/s at batch %d", rnd,
                         run_.get("runtime"), run_["best_images_per_s"],
                         run_["best_batch_size"])  # fmt: skip
            limit_runs.append(runs)
            shift = rnd % len(cells)
            for cell in cells[shift:] + cells[:shift]:
                bench.measure(cell, rnd)
        measurements = bench.measurements
        sdk, sdk_report = measure_sdk(args, server.grpc_url, models.batching)
    cell_rows = aggregate(measurements)
    limit = summarize_limit(limit_runs)
    cpus = os.cpu_count()
    ratios = compute_ratios(
        measurements, cell_rows, limit, compare_at=args.compare_at, cpus=cpus, sdk=sdk
    )
    meta = {
        "command": " ".join(["python -m medserve_bench.bench", *sys.argv[1:]]),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "duration_s": round(time.time() - started, 1),
        "host": platform.node(), "cpus": cpus, "python": platform.python_version(),
        "rounds": args.rounds, "cell_duration_s": args.duration_s, "warmup_s": args.warmup_s,
        "model": args.model, "image_size": list(image_size), "peer_workers": args.peer_workers,
        "config_name": args.config_name,
        "served_config": _served_config(bench_repo / args.model, args.config_name),
        "pytriton": peer_settings,
        "note": "the load generator, Triton and both peers share this machine's CPUs",
        "sdk_speed": sdk_report,
    }  # fmt: skip
    paths = write_outputs(args.out, cells=cell_rows, ratios=ratios, limit=limit, meta=meta)
    sys.stdout.write(paths["markdown"].read_text(encoding="utf-8"))
    log.info("wrote %s", ", ".join(str(p) for p in paths.values()))
    return 1 if any(c["failures"] for c in cell_rows) else 0


def measure_sdk(
    args: argparse.Namespace, url: str, model: str
) -> tuple[dict[str, dict[str, Any]], dict[str, Any] | None]:
    """The SDK rows: ``medserve_bench.sdk_speed`` on the running server, at ``--compare-at``.

    Returns the ratio rows for :func:`~medserve_bench.ratios.compute_ratios`
    (per round: SDK / its plain tritonclient baseline of the same round, and
    the client CPU per image of each as the cause) and the SDK report itself.
    A row that cannot be measured says why instead.
    """
    if not args.sdk_images:
        reason = "not measured: left out (--sdk-images 0)"
        return {
            "sdk_blocking_vs_plain": {"note": reason},
            "sdk_async_vs_plain": {"note": reason},
        }, None
    # After every cell, once, with its own rounds and rotation (sdk_speed.py).
    report = sdk_speed.measure_sdk_rows(
        url, model, concurrency=args.compare_at, images=args.sdk_images, rounds=args.rounds
    )
    rows = {row.variant: row for row in report.rows}
    out: dict[str, dict[str, Any]] = {}
    for name, variant in (("sdk_blocking_vs_plain", sdk_speed.SDK_BLOCKING),
                          ("sdk_async_vs_plain", sdk_speed.SDK_ASYNC)):  # fmt: skip
        row = rows[variant]
        base = rows[sdk_speed.BASELINE[variant]]
        out[name] = {
            "by_round": [a / b for a, b in zip(row.by_round, base.by_round, strict=True) if b],
            "cause": f"against {base.variant} at {args.compare_at} in flight: client "
            f"{row.cpu_ms_per_image:.2f} vs {base.cpu_ms_per_image:.2f} ms CPU/image",
        }
    return out, report.to_dict()


def _served_config(model_dir: Path, config_name: str) -> dict[str, Any]:
    """What medserve's own cell serves: runtime, batcher, instances (for the report)."""
    from google.protobuf import json_format, text_format
    from tritonclient.grpc import model_config_pb2

    path = model_dir / "configs" / f"{config_name}.pbtxt"
    config = text_format.Parse(path.read_text(encoding="utf-8"), model_config_pb2.ModelConfig())
    as_json = json_format.MessageToDict(config, preserving_proto_field_name=True)
    return {key: as_json.get(key) for key in
            ("max_batch_size", "dynamic_batching", "instance_group", "parameters")}  # fmt: skip


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``make bench`` and ``make bench-quick``."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # SIGTERM (a CI timeout, kill) unwinds like Ctrl-C, so the servers this
    # process started are stopped by their context managers, not orphaned.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    return run(apply_presets(build_parser().parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
