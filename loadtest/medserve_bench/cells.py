"""The benchmark's cells: what each one calls, and one cell measured with its CPU and Triton window.

Usage::

    cells = cells_for([1, 4, 16, 32], 16, ["uint8", "encoded"], peer=[4, 16], pytriton=[16, 32])
    bench = Bench(args, servers, models, labels, image_size)
    bench.measure(Cell("medserve", 16), rnd=0)      # -> report.Measurement

Cells by label (each at one concurrency):

- ``medserve``: the local Triton through ``medserve_client`` (one uint8 image per call);
- ``nobatch``: the same against the copy without a dynamic batcher;
- ``runtime <name>``: the copy under the other local runtime;
- ``int8``: the copy served through ``configs/local-int8.pbtxt`` (through the client);
- ``peer``: the naive peer (Flask, ``model.predict`` per request);
- ``pytriton``: the PyTriton peer over raw ``tritonclient.grpc`` uint8 tensors;
- ``payload uint8|float32|encoded``: the local Triton over raw ``tritonclient.grpc``
  (``payload uint8`` is also the medserve side of the PyTriton comparison: the same
  raw load against both servers).

Each measured window records Triton's statistics (diffed) and who used the
CPUs (:mod:`medserve_bench.cpu`): this process (the load generator) and the
process tree of the server the cell drives.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from typing import Any

from medserve_bench import repo
from medserve_bench.cpu import CpuClock, CpuReading
from medserve_bench.driver import run_closed_loop
from medserve_bench.report import Measurement
from medserve_bench.targets import ClientTarget, PayloadTarget, PeerTarget
from medserve_client import contract
from medserve_locust.pool import ImagePool
from medserve_locust.validate import ResponseValidator

log = logging.getLogger("loadtest.bench")


@dataclass(frozen=True)
class Cell:
    """One thing to measure each round."""

    label: str
    concurrency: int


@dataclass(frozen=True)
class Servers:
    """Where each server of the run listens, and the pid of its process tree."""

    grpc_url: str
    triton_pid: int | None
    peer_url: str
    peer_pid: int | None
    pytriton_url: str | None = None
    pytriton_model: str | None = None
    pytriton_pid: int | None = None


def cells_for(
    concurrency: list[int],
    compare_at: int,
    payloads: list[str],
    *,
    peer: list[int] | None = None,
    pytriton: list[int] | None = None,
    other_runtime: str | None = None,
    int8: bool = False,
) -> list[Cell]:
    """Every cell of one round, in the base order.

    Args:
        concurrency: medserve's concurrencies.
        compare_at: The concurrency of the at-N cells (batching off, runtimes, payloads).
        payloads: Payload cells at ``compare_at``.
        peer: The naive peer's concurrencies (default: ``concurrency``).
        pytriton: The PyTriton peer's concurrencies; ``payload uint8`` is
            measured at each too (the same load against medserve).
        other_runtime: The other local runtime's name, if served.
        int8: Whether the INT8 variant is served.
    """
    cells = [Cell("medserve", c) for c in concurrency]
    cells.append(Cell("nobatch", compare_at))
    if other_runtime:
        cells.append(Cell(f"runtime {other_runtime}", compare_at))
    if int8:
        cells.append(Cell("int8", compare_at))
    cells += [Cell("peer", c) for c in (concurrency if peer is None else peer)]
    cells += [Cell("pytriton", c) for c in pytriton or []]
    for payload in payloads:
        at = [compare_at]
        if payload == "uint8":
            at = sorted({compare_at, *(pytriton or [])})
        cells += [Cell(f"payload {payload}", c) for c in at]
    return cells


class Bench:
    """Holds the servers, targets and measurements of one benchmark run."""

    def __init__(self, args: argparse.Namespace, servers: Servers, models: repo.BenchModels,
                 labels: tuple[str, ...], image_size: tuple[int, int]) -> None:  # fmt: skip
        import tritonclient.grpc as grpcclient

        self.args = args
        self.servers = servers
        self.models = models
        self.pool = ImagePool.generated(args.pool_size, image_size)
        self.validator = ResponseValidator(num_classes=len(labels), labels=labels)
        self.measurements: list[Measurement] = []
        self.stats = grpcclient.InferenceServerClient(servers.grpc_url)
        self.peer_stats = (
            grpcclient.InferenceServerClient(servers.pytriton_url) if servers.pytriton_url else None
        )

    def close(self) -> None:
        """Close the statistics channels."""
        self.stats.close()
        if self.peer_stats is not None:
            self.peer_stats.close()

    def _target(self, cell: Cell) -> tuple[Any, str | None, Any, int | None]:
        """The target of ``cell``, the Triton model whose statistics it moves, the
        statistics client of that server and the pid of the server's process tree."""
        m, pool, check, s = self.models, self.pool, self.validator, self.servers
        local = (self.stats, s.triton_pid)
        if cell.label == "medserve":
            return ClientTarget(s.grpc_url, m.batching, pool, check), m.batching, *local
        if cell.label == "nobatch":
            return ClientTarget(s.grpc_url, m.no_batching, pool, check), m.no_batching, *local
        if cell.label.startswith("runtime") and m.other_runtime:
            other = ClientTarget(s.grpc_url, m.other_runtime, pool, check)
            return other, m.other_runtime, *local
        if cell.label == "int8" and m.int8:
            return ClientTarget(s.grpc_url, m.int8, pool, check), m.int8, *local
        if cell.label == "peer":
            return PeerTarget(s.peer_url, pool, check), None, None, s.peer_pid
        if cell.label == "pytriton" and s.pytriton_url and s.pytriton_model:
            raw = PayloadTarget(s.pytriton_url, s.pytriton_model, "uint8", pool, check,
                                **self._io_names(m.batching))  # fmt: skip
            return raw, s.pytriton_model, self.peer_stats, s.pytriton_pid
        payload = cell.label.split()[-1]
        if not cell.label.startswith("payload ") or payload not in ("uint8", "float32", "encoded"):
            raise ValueError(f"cell {cell.label!r} is not served in this run")
        model = str({"uint8": m.batching, "float32": m.float32, "encoded": m.encoded}[payload])
        target = PayloadTarget(s.grpc_url, model, payload, pool, check, **self._io_names(model))
        # The encoded ensemble's batching happens in the classifier it calls.
        return target, m.float32 if payload == "float32" else m.batching, *local

    def _io_names(self, model: str) -> dict[str, str]:
        meta = self.stats.get_model_metadata(model, as_json=True)
        return {"input_name": meta["inputs"][0]["name"], "output_name": meta["outputs"][0]["name"]}

    def warm_up_peer(self) -> None:
        """Send every peer worker its first requests (Keras traces on the first predict).

        Triton warms its models from their config; the peer gets the same
        courtesy so that neither pays a one-time cost inside a measured cell.
        """
        target = PeerTarget(self.servers.peer_url, self.pool, self.validator)
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
        target, stats_model, stats_client, server_pid = self._target(cell)
        clock = CpuClock(server_pid)
        try:
            snapshots: dict[str, dict[str, contract.ModelCounters]] = {}
            cpu: dict[str, CpuReading] = {}

            def on_window(edge: str) -> None:
                # Triton's counters and the CPU clocks over the same window as the samples.
                cpu[edge] = clock.read()
                if stats_model and stats_client is not None:
                    snapshots[edge] = contract.snapshot(stats_client)

            result = run_closed_loop(
                target.make_call,
                concurrency=cell.concurrency,
                duration_s=self.args.duration_s,
                warmup_s=self.args.warmup_s,
                on_window=on_window,
            )
            server = self._server_window(snapshots, stats_model, getattr(target, "model", None))
        finally:
            target.close()
        usage = cpu["end"].since(cpu["start"], images=result.inferences)
        item = Measurement(
            group=cell.label.split()[0], label=cell.label, concurrency=cell.concurrency, round=rnd,
            inferences_per_s=result.inferences_per_s, latencies_ms=result.latencies_ms,
            failures=result.failures, bytes_per_request=target.bytes_per_request,
            server=server, first_error=result.first_error, cpu=usage.to_dict(),
        )  # fmt: skip
        log.info("round %d %-16s @%-3d %8.1f images/s  p50 %s ms  cores client %.2f server %s  "
                 "failures %d%s", rnd, cell.label, cell.concurrency, item.inferences_per_s,
                 f"{float(sorted(result.latencies_ms)[len(result.latencies_ms) // 2]):.1f}"
                 if result.requests else "-", usage.client_cores,
                 "-" if usage.server_cores is None else f"{usage.server_cores:.2f}", item.failures,
                 f"  ({item.first_error})" if item.first_error else "")  # fmt: skip
        self.measurements.append(item)
        return item

    @staticmethod
    def _server_window(
        snapshots: dict[str, dict[str, contract.ModelCounters]],
        stats_model: str | None,
        entry: str | None,
    ) -> dict[str, Any] | None:
        """Triton's window of ``stats_model``; an ensemble's time inside Triton is its own."""
        if not stats_model or "start" not in snapshots:
            return None
        windows = contract.diff(snapshots["start"], snapshots["end"])
        if stats_model not in windows:
            return None
        server = dict(windows[stats_model].to_dict())
        if entry is not None and entry != stats_model and entry in windows:
            # An ensemble: batching is its classifier's, time inside Triton its own.
            server["mean_request_ms"] = windows[entry].to_dict()["mean_request_ms"]
        return server
