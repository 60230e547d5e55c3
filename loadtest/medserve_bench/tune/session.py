"""The tuner's measuring harness: a private local Triton whose classifier config is switched live.

Usage::

    with TuningSession(Path("model_repository"), "medcnn", Path("work/tune")) as session:
        cell = session.measure(candidate, concurrency=16, duration_s=3.0)

The session copies only the classifier (hard links) into a private repository
and starts the real ``tritonserver`` on it as ``medserve serve`` does
(:class:`medserve.local_triton.LocalTriton`, same binary, ``configs/local.pbtxt``
at start), but with ``--model-control-mode=explicit`` on loopback: a new
candidate is served by the repository API's load with a config override
(``parameters.config``, the candidate's ``ModelConfig`` as JSON; Triton 2.51
has it), which starts new backend stubs and retires the old ones without
restarting the server or moving its ports. Load comes from the benchmark's
own closed loop (:func:`medserve_bench.driver.run_closed_loop`) through the
SDK (:class:`~medserve_bench.targets.ClientTarget`, what ``make bench``
measures) or raw tritonclient (:class:`~medserve_bench.targets.PayloadTarget`),
with every answer validated; Triton's statistics are diffed over exactly the
measured window for the batch sizes the batcher formed.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from google.protobuf import json_format

from medserve_bench.driver import run_closed_loop
from medserve_bench.latency import latency_summary
from medserve_bench.repo import copy_tree
from medserve_bench.targets import ClientTarget, PayloadTarget
from medserve_bench.tune.search import SCREEN, Cell
from medserve_bench.tune.space import Candidate
from medserve_client import contract
from medserve_locust.pool import ImagePool
from medserve_locust.validate import ResponseValidator

log = logging.getLogger(__name__)

CLIENTS = ("sdk", "raw")
# Seconds around a cell beyond warm-up and window: clients and their
# metadata calls, the statistics snapshots, joining the callers.
_CELL_OVERHEAD_S = 1.5


class TuningSession:
    """A private local Triton serving one classifier, and the load that measures it."""

    def __init__(
        self,
        repo: Path,
        model: str,
        work: Path,
        *,
        client: str = "sdk",
        warmup_s: float = 1.0,
        pool_size: int = 32,
        startup_timeout_s: float = 240.0,
    ) -> None:
        """Describe the session; nothing starts until :meth:`start`.

        Args:
            repo: The exported model repository (never modified here).
            model: The classifier's model name.
            work: A folder of the tuner's own (its private repository and server log).
            client: ``"sdk"`` (medserve_client, as ``make bench``) or ``"raw"`` (tritonclient).
            warmup_s: Unmeasured seconds at the start of every cell.
            pool_size: Generated images the callers cycle through.
            startup_timeout_s: How long the server may take to start.
        """
        if client not in CLIENTS:
            raise ValueError(f"client must be one of {CLIENTS}, got {client!r}")
        self.repo, self.model, self.work = Path(repo), model, Path(work)
        self.client, self.warmup_s, self.pool_size = client, warmup_s, pool_size
        self.startup_timeout_s = startup_timeout_s
        self.loaded: Candidate | None = None
        # Seconds a config switch takes: the server's start at first (an upper
        # bound), then the slowest switch seen (the budget must hold).
        self.switch_s = 0.0
        self._switches: list[float] = []
        self._server: Any = None
        self._stats: Any = None
        self.base: Any = None

    def __enter__(self) -> TuningSession:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Write the private repository and start the server on the exported local config."""
        import tritonclient.grpc as grpcclient

        from medserve.local_triton import LocalTriton
        from medserve.model_config import parse_config
        from medserve.spec import SPEC_FILENAME, ModelSpec

        source = self.repo / self.model
        self.spec = ModelSpec.read(source / SPEC_FILENAME)
        private = self.work / "repo"
        if private.exists():
            shutil.rmtree(private)
        private.mkdir(parents=True)
        copy_tree(source, private / self.model)
        self.base = parse_config(private / self.model / "configs" / "local.pbtxt")
        self._server = LocalTriton(
            private,
            model_control_mode="explicit",
            log_path=self.work / "tritonserver.log",
            startup_timeout_s=self.startup_timeout_s,
        )
        started = time.monotonic()
        self._server.start()
        self.switch_s = time.monotonic() - started
        self.loaded = Candidate.from_config(self.base)
        self._stats = grpcclient.InferenceServerClient(self._server.grpc_url)
        self.pool = ImagePool.generated(self.pool_size, self.spec.image_size)
        self.validator = ResponseValidator(
            num_classes=self.spec.num_classes, labels=self.spec.labels
        )

    def stop(self) -> None:
        """Stop the server; safe to call twice."""
        if self._stats is not None:
            self._stats.close()
            self._stats = None
        if self._server is not None:
            self._server.stop()
            self._server = None

    @property
    def switches_s(self) -> list[float]:
        """Seconds each config switch took, in order."""
        return list(self._switches)

    def estimate_s(self, candidate: Candidate, duration_s: float) -> float:
        """Seconds one cell of ``candidate`` takes from now, a switch included if needed."""
        switch = 0.0 if candidate == self.loaded else self.switch_s
        return switch + self.warmup_s + duration_s + _CELL_OVERHEAD_S

    def _switch(self, candidate: Candidate) -> str | None:
        """Serve ``candidate``; returns why it could not be loaded, or None."""
        from tritonclient.utils import InferenceServerException

        config = candidate.apply(self.base)
        text = json_format.MessageToJson(config, preserving_proto_field_name=True)
        started = time.monotonic()
        try:
            self._stats.load_model(self.model, config=text)
        except InferenceServerException as exc:
            self.loaded = None  # Whatever is served now, the next candidate reloads.
            self._server.check_alive()
            return f"load failed: {str(exc)[:300]}"
        took = time.monotonic() - started
        self._switches.append(took)
        self.switch_s = max(self._switches)
        self.loaded = candidate
        log.info("serving %s (switch %.1f s)", candidate.label, took)
        return None

    def _target(self) -> Any:
        if self.client == "sdk":
            return ClientTarget(self._server.grpc_url, self.model, self.pool, self.validator)
        return PayloadTarget(
            self._server.grpc_url,
            self.model,
            "uint8",
            self.pool,
            self.validator,
            input_name=self.spec.input_name,
            output_name=self.spec.output_name,
        )

    def measure(self, candidate: Candidate, concurrency: int, duration_s: float) -> Cell:
        """Serve ``candidate`` (switching if needed) and measure one closed-loop cell."""
        if candidate != self.loaded:
            error = self._switch(candidate)
            if error is not None:
                return Cell(
                    candidate=candidate,
                    concurrency=concurrency,
                    stage=SCREEN,
                    round=0,
                    images_per_s=0.0,
                    p50_ms=None,
                    p99_ms=None,
                    error=error,
                )
        target = self._target()
        snapshots: dict[str, dict[str, contract.ModelCounters]] = {}

        def on_window(edge: str) -> None:
            snapshots[edge] = contract.snapshot(self._stats)

        try:
            result = run_closed_loop(
                target.make_call,
                concurrency=concurrency,
                duration_s=duration_s,
                warmup_s=self.warmup_s,
                on_window=on_window,
            )
        finally:
            target.close()
        window = contract.diff(snapshots["start"], snapshots["end"]).get(self.model)
        latency = latency_summary(result.latencies_ms)
        if result.failures:
            self._server.check_alive()
        return Cell(
            candidate=candidate,
            concurrency=concurrency,
            stage=SCREEN,
            round=0,
            images_per_s=result.inferences_per_s,
            p50_ms=latency["p50_ms"],
            p99_ms=latency["p99_ms"],
            failures=result.failures,
            images_per_execution=window.inferences_per_execution if window else None,
            duration_s=duration_s,
            error=f"requests failed: {result.first_error}" if result.failures else None,
        )
