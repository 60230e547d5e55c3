"""``loadtest/run``: one headless locust run with exact percentiles and Triton's view.

Usage::

    loadtest/run                                   # local Triton on model_repository/, 30 s
    loadtest/run --users 32 --run-time 2m --batch-size 4 --input-mode encoded
    loadtest/run --host grpc://triton.example:8001 --labels normal,lesion
    loadtest/run --protocol http --host http://127.0.0.1:8000 --shape step_ramp --max-users 32
    loadtest/run --scenario my_scenario            # medserve_locust/scenarios/my_scenario.py

Without ``--host`` it starts the local Triton (``medserve.local_triton.LocalTriton``)
on ``--repo`` and stops it afterwards, whatever happens. It runs locust
headless as a subprocess and writes into ``--out``: locust's CSV files and HTML
report, every request's latency (``samples.csv``) and ``summary.json`` with
throughput in inferences/s (batch size counted), exact p50/p90/p95/p99,
failures, and the server-side window diffed from Triton's statistics API
(inferences per execution, mean queue and compute time). The exit status is
locust's: 1 when a threshold (``--max-failure-ratio``, ``--max-p95-ms``) was
crossed; before locust starts, 3 when no server answers at ``--host`` and 4
when the model is not ready there (the table every medserve command shares).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import medserve_locust
from medserve_bench.latency import latency_summary, throughput
from medserve_client import contract
from medserve_client.transport import grpc_client_kwargs
from medserve_locust import options
from medserve_locust.samples import read_samples

log = logging.getLogger("loadtest.run")

ROOT = Path(__file__).resolve().parents[2]
LOCUST_DIR = Path(medserve_locust.__file__).resolve().parent
SCENARIOS_DIR = LOCUST_DIR / "scenarios"
SHAPES_DIR = LOCUST_DIR / "shapes"
PROTOCOLS = ("grpc", "http")
MANY_SERVERS = "statistics unavailable: the host names several servers; read each one's"


def _names(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.py") if not p.stem.startswith("_"))


def build_parser() -> argparse.ArgumentParser:
    """The ``loadtest/run`` command line."""
    parser = argparse.ArgumentParser(
        prog="loadtest/run", description="Run a headless locust load test against Triton."
    )
    parser.add_argument("--host", default="", help="Triton address; empty: start a local one")
    parser.add_argument(
        "--protocol", choices=PROTOCOLS, default="grpc", help="Which of Triton's APIs to load"
    )
    parser.add_argument(
        "--scenario",
        choices=_names(SCENARIOS_DIR),
        default=None,
        help="A file of medserve_locust/scenarios/ (default: classify_PROTOCOL)",
    )
    parser.add_argument("--repo", type=Path, default=ROOT / "model_repository")
    parser.add_argument(
        "--users", type=int, default=16, help="Concurrent users (requests in flight)"
    )
    parser.add_argument("--spawn-rate", type=float, default=16.0, help="Users started per second")
    parser.add_argument("--run-time", default="30s", help="Locust duration, e.g. 30s, 2m")
    parser.add_argument(
        "--shape",
        choices=("none", *_names(SHAPES_DIR)),
        default="none",
        help="A file of medserve_locust/shapes/ (locust then ignores users and run time)",
    )
    options.add_arguments(parser, options.RAMP_OPTIONS)
    # The samples file is this runner's to place (under --out).
    options.add_arguments(parser, options.LOAD_OPTIONS, skip=("--samples-file",))
    parser.add_argument("--out", type=Path, default=None, help="Output folder")
    parser.add_argument(
        "locust_args", nargs="*", help="Extra locust arguments, after '--'", metavar="LOCUST_ARG"
    )
    return parser


def local_labels(repo: Path, model: str) -> str:
    """The exported label list of ``model`` as a comma-separated string ('' if absent)."""
    path = repo / model / "labels.txt"
    if not path.is_file():
        return ""
    return ",".join(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line)


def stats_client(protocol: str, host: str) -> Any:
    """A tritonclient for the health and statistics APIs of ``host``.

    gRPC hosts are dialled as the scenario and the SDK dial them
    (``grpc_client_kwargs``): a ``dns:///`` or ``ipv4:`` target is balanced.
    """
    if protocol == "grpc":
        import tritonclient.grpc as grpcclient

        return grpcclient.InferenceServerClient(**grpc_client_kwargs(host))
    address = host.split("://", 1)[-1].rstrip("/")
    import tritonclient.http as httpclient

    return httpclient.InferenceServerClient(url=address, ssl=host.startswith("https://"))


def names_many_servers(protocol: str, host: str) -> bool:
    """Whether ``host`` is a gRPC target the SDK balances (``dns:///``, ``ipv4:`` lists).

    Then one statistics client reads whichever server each call reaches, not
    the whole load: the summary says so instead of reporting one server's share.
    """
    if protocol != "grpc":
        return False
    return "grpc.service_config" in dict(grpc_client_kwargs(host)["channel_args"])


def check_serving(client: Any, host: str, model: str) -> None:
    """Fail before locust starts when nothing serves ``model`` at ``host``.

    Without it, locust would run its whole duration against nothing and exit
    1 (every request failed), like a real failure of the server under load.

    Raises:
        ServerUnavailableError: No server answers at ``host`` (exit status 3).
        ModelNotReadyError: The server answers but ``model`` is not ready (4).
    """
    from medserve_client.exceptions import ModelNotReadyError, ServerUnavailableError

    try:
        live = bool(client.is_server_live())
        ready = live and bool(client.is_model_ready(model))
    except Exception as exc:  # tritonclient's and the socket layer's errors, both protocols
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise ServerUnavailableError(
            f"no Triton answers at {host} ({reason}); is it running and reachable?"
        ) from exc
    if not live:
        raise ServerUnavailableError(f"the Triton at {host} is not live")
    if not ready:
        raise ModelNotReadyError(f"model {model!r} is not ready at {host} (--model?)")


def locust_command(args: argparse.Namespace, host: str, out: Path, labels: str) -> list[str]:
    """The headless locust command line for ``args``."""
    scenario = args.scenario or f"classify_{args.protocol}"
    files = [str(SCENARIOS_DIR / f"{scenario}.py")]
    load: list[str] = []
    if args.shape != "none":
        files.append(str(SHAPES_DIR / f"{args.shape}.py"))
        load = options.forward(args, options.RAMP_OPTIONS)
    else:
        load = [
            f"--users={args.users}",
            f"--spawn-rate={args.spawn_rate}",
            f"--run-time={args.run_time}",
        ]
    forwarded = argparse.Namespace(**{**vars(args), "labels": labels})
    command = [
        sys.executable, "-m", "locust", "-f", ",".join(files), "--headless", "--only-summary",
        f"--host={host}", f"--csv={out / 'locust'}", f"--html={out / 'report.html'}",
        "--stop-timeout=10", f"--samples-file={out / 'samples.csv'}",
        *options.forward(forwarded, options.LOAD_OPTIONS), *load,
    ]  # fmt: skip
    return command + list(args.locust_args)


def _snapshot(client: Any, *, settled: bool = False) -> dict[str, contract.ModelCounters] | str:
    try:
        return contract.settled_snapshot(client) if settled else contract.snapshot(client)
    except Exception as exc:  # A restricted statistics API must not fail the load test.
        return f"statistics unavailable: {type(exc).__name__}: {str(exc)[:200]}"


def summarize(
    args: argparse.Namespace, host: str, out: Path, exit_code: int, server: dict[str, Any] | str
) -> dict[str, Any]:
    """Build ``summary.json`` from the samples and the server window."""
    samples = read_samples(out / "samples.csv", *sorted(out.glob("samples.csv.*")))
    rate = throughput(samples)
    total = rate["requests"] + rate["failures"]
    return {
        "target": {
            "host": host,
            "protocol": args.protocol,
            "scenario": args.scenario or f"classify_{args.protocol}",
            "model": args.model,
            "input_mode": args.input_mode,
            "batch_size": args.batch_size,
            "local_server": not args.host,
        },
        "load": {
            "shape": args.shape,
            "users": args.users if args.shape == "none" else args.max_users,
            "run_time": args.run_time if args.shape == "none" else None,
        },
        "throughput": rate,
        "latency_ms": latency_summary(samples.latency_ms[samples.ok]),
        "failures": {
            "count": rate["failures"],
            "ratio": round(rate["failures"] / total, 6) if total else None,
        },
        "server": server,
        "locust_exit_code": exit_code,
        "files": {
            "samples": "samples.csv",
            "locust_csv": "locust_stats.csv",
            "html": "report.html",
        },
    }


def run(args: argparse.Namespace) -> int:
    """Run one load test as ``args`` say; returns locust's exit status."""
    # Absolute: locust runs in the scenarios' folder and must find the user's relative paths.
    out = (args.out or ROOT / "loadtest" / "results" / time.strftime("run-%Y%m%d-%H%M%S")).resolve()
    if args.images:
        args.images = str(Path(args.images).resolve())
    out.mkdir(parents=True, exist_ok=True)
    for stale in [out / "samples.csv", *out.glob("samples.csv.*")]:
        stale.unlink(missing_ok=True)
    labels = args.labels
    with contextlib.ExitStack() as stack:
        host = args.host
        if not host:
            from medserve.local_triton import LocalTriton

            log.info("starting a local Triton on %s", args.repo)
            local = stack.enter_context(LocalTriton(args.repo))
            host = local.grpc_url if args.protocol == "grpc" else local.http_url
            labels = labels or local_labels(args.repo, args.model)
        if args.protocol == "http" and "://" not in host:
            host = "http://" + host
        client = stats_client(args.protocol, host)
        stack.callback(client.close)
        if args.host:
            check_serving(client, host, args.model)
        spread = names_many_servers(args.protocol, host)
        before = MANY_SERVERS if spread else _snapshot(client)
        command = locust_command(args, host, out, labels)
        log.info("running: %s", " ".join(command))
        exit_code = subprocess.run(command, cwd=SCENARIOS_DIR, check=False).returncode
        # Triton counts the last requests after answering them: wait until it has.
        after = MANY_SERVERS if spread else _snapshot(client, settled=True)
    if isinstance(before, str) or isinstance(after, str):
        server: dict[str, Any] | str = before if isinstance(before, str) else str(after)
    else:
        server = {k: v.to_dict() for k, v in contract.diff(before, after).items()}
    summary = summarize(args, host, out, exit_code, server)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    rate, latency = summary["throughput"], summary["latency_ms"]
    log.info(
        "%s inferences/s, p50 %s ms, p99 %s ms, %d failures; wrote %s",
        rate["inferences_per_s"], latency["p50_ms"], latency["p99_ms"], rate["failures"],
        out / "summary.json",
    )  # fmt: skip
    return exit_code


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``loadtest/run``."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # SIGTERM (a CI timeout, kill) unwinds like Ctrl-C, so the servers this
    # process started are stopped by their context managers, not orphaned.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    args = build_parser().parse_args(argv)
    from medserve.errors import MedServeError  # The local server's (the [bench] extra).

    # The exit-status table of every medserve command: 3 when no server
    # answers, 2 for bad input; otherwise locust's own status.
    return contract.run_command(lambda: run(args), prog="loadtest/run", errors=(MedServeError,))


if __name__ == "__main__":
    sys.exit(main())
