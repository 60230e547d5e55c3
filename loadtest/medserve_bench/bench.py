"""``make bench``: every variant measured in the same run, interleaved over rounds.

Usage::

    python -m medserve_bench.bench              # full: 3 rounds, 15 s per cell (about 15 minutes)
    python -m medserve_bench.bench --quick      # 1 round, 3 s per cell
    python -m medserve_bench.bench --repo model_repository --keras-model work/model/model.keras \\
        --concurrency 1,4,16,32 --compare-at 16 --rounds 3 --duration-s 15

One local Triton serves the exported model and its bench variants
(:mod:`medserve_bench.repo`: batching off, float32 input); the naive peer runs under
gunicorn beside it. Each round measures, in an order rotated from round to
round so slow drift does not favour one variant:

1. the in-process limit (:mod:`medserve_bench.inprocess`, its own process, servers idle)
   of each runtime: the SavedModel under TensorFlow and ``model.onnx`` under
   onnxruntime; the limit in the ratio is the best of them;
2. medserve through ``medserve_client`` at each ``--concurrency`` (batching on);
3. batching off at ``--compare-at``, and the classifier under the other local
   runtime (the one the served config does not name) at ``--compare-at``;
4. the naive peer at each ``--concurrency``;
5. payloads at ``--compare-at``: uint8, float32 and encoded JPEG tensors.

Triton serves the config ``tuned`` when ``medserve tune`` wrote one
(``configs/tuned.pbtxt``), else ``local``; ``--config-name`` chooses.
Every cell is a closed loop (:mod:`medserve_bench.driver`) whose answers are validated;
Triton's statistics are diffed over each cell. Writes ``bench.json``,
``bench.md`` and ``bench.png`` under ``--out``; exits 1 if any request failed
(numbers from wrong answers mean nothing), 0 otherwise, whether or not the
ratios reach their targets (the table says which do).
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medserve_bench import repo
from medserve_bench.driver import run_closed_loop
from medserve_bench.naive_peer import PeerServer, free_port
from medserve_bench.report import Measurement, aggregate, compute_ratios, write_outputs
from medserve_bench.targets import ClientTarget, PayloadTarget, PeerTarget
from medserve_client import contract
from medserve_locust.pool import ImagePool
from medserve_locust.validate import ResponseValidator

log = logging.getLogger("loadtest.bench")

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Cell:
    """One thing to measure each round."""

    label: str
    concurrency: int


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
    p.add_argument("--concurrency", default="1,4,16,32")
    p.add_argument("--compare-at", type=int, default=16, help="concurrency of the ratios")
    p.add_argument("--limit-batch-sizes", default=None, help="default 1,4,8,16,32,64")
    p.add_argument("--limit-duration-s", type=float, default=None)
    p.add_argument(
        "--payloads",
        default="uint8,float32,encoded",
        help="payload cells to measure (float32 needs a bench-only export of the model)",
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
    quick = {"rounds": 1, "duration_s": 3.0, "warmup_s": 1.0, "limit_duration_s": 1.0,
             "limit_batch_sizes": "1,8,32"}  # fmt: skip
    full = {"rounds": 3, "duration_s": 15.0, "warmup_s": 3.0, "limit_duration_s": 4.0,
            "limit_batch_sizes": "1,4,8,16,32,64"}  # fmt: skip
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.out is None:
        args.out = ROOT / "loadtest" / "results" / ("bench-quick" if args.quick else "bench")
    if args.config_name is None:
        args.config_name = served_config_name(args.repo, args.model)
    return args


def served_config_name(repo_dir: Path, model: str) -> str:
    """``tuned`` when ``medserve tune`` wrote ``configs/tuned.pbtxt``, else ``local``."""
    return "tuned" if (repo_dir / model / "configs" / "tuned.pbtxt").is_file() else "local"


def cells_for(concurrency: list[int], compare_at: int, payloads: list[str]) -> list[Cell]:
    """Every cell of one round, in the base order."""
    cells = [Cell("medserve", c) for c in concurrency]
    cells.append(Cell("nobatch", compare_at))
    cells += [Cell("peer", c) for c in concurrency]
    cells += [Cell(f"payload {p}", compare_at) for p in payloads]
    return cells


def newest_artifacts(model_dir: Path) -> list[Path]:
    """``model.savedmodel`` and, if exported, ``model.onnx`` of the newest version."""
    versions = sorted((int(p.name) for p in model_dir.iterdir() if p.name.isdigit()), reverse=True)
    if not versions:
        raise FileNotFoundError(f"{model_dir} has no version")
    version_dir = model_dir / str(versions[0])
    onnx = version_dir / "model.onnx"
    return [version_dir / repo.SAVEDMODEL_DIRNAME, *([onnx] if onnx.is_file() else [])]


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


class Bench:
    """Holds the servers, targets and measurements of one benchmark run."""

    def __init__(self, args: argparse.Namespace, grpc_url: str, peer_url: str,
                 models: repo.BenchModels, labels: tuple[str, ...],
                 image_size: tuple[int, int]) -> None:  # fmt: skip
        self.args = args
        self.grpc_url = grpc_url
        self.peer_url = peer_url
        self.models = models
        self.pool = ImagePool.generated(args.pool_size, image_size)
        self.validator = ResponseValidator(num_classes=len(labels), labels=labels)
        self.measurements: list[Measurement] = []
        import tritonclient.grpc as grpcclient

        self.stats = grpcclient.InferenceServerClient(grpc_url)

    def close(self) -> None:
        """Close the statistics channel."""
        self.stats.close()

    def _target(self, cell: Cell) -> tuple[Any, str | None]:
        """The target of ``cell`` and the Triton model whose statistics it moves."""
        m, pool, check = self.models, self.pool, self.validator
        if cell.label == "medserve":
            return ClientTarget(self.grpc_url, m.batching, pool, check), m.batching
        if cell.label == "nobatch":
            return ClientTarget(self.grpc_url, m.no_batching, pool, check), m.no_batching
        if cell.label.startswith("runtime") and m.other_runtime:
            return ClientTarget(self.grpc_url, m.other_runtime, pool, check), m.other_runtime
        if cell.label == "peer":
            return PeerTarget(self.peer_url, pool, check), None
        payload = cell.label.split()[-1]
        model = str({"uint8": m.batching, "float32": m.float32, "encoded": m.encoded}[payload])
        target = PayloadTarget(self.grpc_url, model, payload, pool, check, **self._io_names(model))
        # The encoded ensemble's batching happens in the classifier it calls.
        return target, m.float32 if payload == "float32" else m.batching

    def _io_names(self, model: str) -> dict[str, str]:
        meta = self.stats.get_model_metadata(model, as_json=True)
        return {"input_name": meta["inputs"][0]["name"], "output_name": meta["outputs"][0]["name"]}

    def warm_up_peer(self) -> None:
        """Send every peer worker its first requests (Keras traces on the first predict).

        Triton warms its models from their config; the peer gets the same
        courtesy so that neither pays a one-time cost inside a measured cell.
        """
        target = PeerTarget(self.peer_url, self.pool, self.validator)
        try:
            result = run_closed_loop(
                target.make_call,
                concurrency=2 * self.args.peer_workers,
                duration_s=max(1.0, self.args.warmup_s),
                warmup_s=max(1.0, self.args.warmup_s),
            )
        finally:
            target.close()
        if result.failures:
            raise RuntimeError(f"the naive peer fails its warm-up: {result.first_error}")

    def measure(self, cell: Cell, rnd: int) -> Measurement:
        """Run one cell and record it."""
        target, stats_model = self._target(cell)
        try:
            snapshots: dict[str, dict[str, contract.ModelCounters]] = {}

            def on_window(edge: str) -> None:
                # Triton's counters over the same window as the client's samples.
                snapshots[edge] = contract.snapshot(self.stats)

            result = run_closed_loop(
                target.make_call,
                concurrency=cell.concurrency,
                duration_s=self.args.duration_s,
                warmup_s=self.args.warmup_s,
                on_window=on_window if stats_model else None,
            )
            server = None
            if stats_model:
                windows = contract.diff(snapshots["start"], snapshots["end"])
                if stats_model in windows:
                    server = windows[stats_model].to_dict()
                entry = getattr(target, "model", stats_model)
                if server is not None and entry != stats_model and entry in windows:
                    # An ensemble: batching is its classifier's, time inside Triton its own.
                    server["mean_request_ms"] = windows[entry].to_dict()["mean_request_ms"]
        finally:
            target.close()
        item = Measurement(
            group=cell.label.split()[0], label=cell.label, concurrency=cell.concurrency, round=rnd,
            inferences_per_s=result.inferences_per_s, latencies_ms=result.latencies_ms,
            failures=result.failures, bytes_per_request=target.bytes_per_request,
            server=server, first_error=result.first_error,
        )  # fmt: skip
        log.info("round %d %-16s @%-3d %8.1f images/s  p50 %s ms  failures %d%s", rnd, cell.label,
                 cell.concurrency, item.inferences_per_s,
                 f"{float(sorted(result.latencies_ms)[len(result.latencies_ms) // 2]):.1f}"
                 if result.requests else "-", item.failures,
                 f"  ({item.first_error})" if item.first_error else "")  # fmt: skip
        self.measurements.append(item)
        return item


def _spec(repo: Path, model: str) -> tuple[tuple[str, ...], tuple[int, int]]:
    from medserve.spec import SPEC_FILENAME, ModelSpec

    spec = ModelSpec.read(repo / model / SPEC_FILENAME)
    return spec.labels, spec.image_size


def run(args: argparse.Namespace) -> int:
    """Run the benchmark as ``args`` say; returns the exit status."""
    from medserve.local_triton import LocalTriton

    if not args.keras_model.is_file():
        raise FileNotFoundError(f"no Keras model {args.keras_model} for the naive peer")
    args.out.mkdir(parents=True, exist_ok=True)
    labels, image_size = _spec(args.repo, args.model)
    payloads = [p for p in args.payloads.split(",") if p]
    unknown = set(payloads) - {"uint8", "float32", "encoded"}
    if unknown:
        raise ValueError(f"unknown payloads {sorted(unknown)}")
    models = repo.write_bench_repo(
        args.repo,
        args.work / "repo",
        model=args.model,
        keras_model=args.keras_model if "float32" in payloads else None,
        config_name=args.config_name,
    )
    if models.encoded is None and "encoded" in payloads:
        payloads.remove("encoded")  # A repository exported without the ensemble.
    concurrency = [int(c) for c in args.concurrency.split(",")]
    cells = cells_for(concurrency, args.compare_at, payloads)
    if models.other_runtime:
        runtime = models.other_runtime.removeprefix(args.model + "_")
        cells.insert(len(concurrency) + 1, Cell(f"runtime {runtime}", args.compare_at))
    artifacts = newest_artifacts(args.repo / args.model)
    limits: list[dict[str, Any]] = []
    by_runtime: list[dict[str, dict[str, Any]]] = []
    started = time.time()
    with contextlib.ExitStack() as stack:
        peer = PeerServer(args.keras_model, workers=args.peer_workers, labels=labels,
                          log_path=args.out / "peer.log")  # fmt: skip
        stack.callback(peer.stop)
        peer.launch()  # Loads its model while Triton starts.
        server = stack.enter_context(
            LocalTriton(
                args.work / "repo",
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
        bench = Bench(args, server.grpc_url, peer.url, models, labels, image_size)
        stack.callback(bench.close)
        bench.warm_up_peer()
        for rnd in range(args.rounds):
            # Each runtime in process; the round's limit is the better one.
            runs = [measure_limit(args, artifact) for artifact in artifacts]
            for run_ in runs:
                log.info("round %d in-process limit %s %.1f images/s at batch %d", rnd,
                         run_.get("runtime"), run_["best_images_per_s"],
                         run_["best_batch_size"])  # fmt: skip
            limits.append(max(runs, key=lambda r: float(r["best_images_per_s"])))
            by_runtime.append({str(r.get("runtime")): r for r in runs})
            shift = rnd % len(cells)
            for cell in cells[shift:] + cells[:shift]:
                bench.measure(cell, rnd)
        measurements = bench.measurements
    cell_rows = aggregate(measurements)
    best = [x["best_images_per_s"] for x in limits]
    ratios = compute_ratios(measurements, cell_rows, best, compare_at=args.compare_at)
    limit = {
        "best_images_per_s": max(best),
        "best_batch_size": limits[best.index(max(best))]["best_batch_size"],
        "best_runtime": limits[best.index(max(best))].get("runtime"),
        "by_round": best,
        "by_runtime": {
            name: max(r[name]["best_images_per_s"] for r in by_runtime) for name in by_runtime[0]
        },
        "runs": [run_ for r in by_runtime for run_ in r.values()],
    }
    meta = {
        "command": " ".join(sys.argv),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "duration_s": round(time.time() - started, 1),
        "host": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version(),
        "rounds": args.rounds, "cell_duration_s": args.duration_s, "warmup_s": args.warmup_s,
        "model": args.model, "image_size": list(image_size), "peer_workers": args.peer_workers,
        "config_name": args.config_name,
        "note": "client, Triton and the naive peer share this machine's CPUs",
    }  # fmt: skip
    paths = write_outputs(args.out, cells=cell_rows, ratios=ratios, limit=limit, meta=meta)
    sys.stdout.write(paths["markdown"].read_text(encoding="utf-8"))
    log.info("wrote %s", ", ".join(str(p) for p in paths.values()))
    return 1 if any(c["failures"] for c in cell_rows) else 0


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
