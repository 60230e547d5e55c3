"""Load faults: an overload far past the batcher's queue, and a soak under steady load.

Usage::

    row = overload(source_repo, work_dir, SHORT)
    row = soak(server, SHORT)           # any running LocalTriton with the classifier
"""

from __future__ import annotations

import statistics
import threading
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np

from chaos.callers import PROTOCOLS, Callers
from chaos.load import HANG_AFTER_S, CallTally, LoadRun, steady_load
from chaos.memory import megabytes, watch_memory
from chaos.servers import QueueHold, classifier_repo, start_server
from chaos.settings import Scale, sample_images
from chaos.table import FaultRow
from medserve.local_triton import LocalTriton
from medserve_client import Client, ServerOverloadedError

# The batcher holds admitted requests this long; a rejection must come back
# before the admitted requests do.
OVERLOAD_HOLD_US = 1_500_000
SOAK_MAX_GROWTH = 0.10


def _storm(client: Client, images: list[Any], workers: int) -> CallTally:
    """``workers`` calls released at once, one image each."""
    start = threading.Barrier(workers)

    def call(worker: int) -> None:
        start.wait()  # Each worker makes exactly one call: the load has as many calls.
        client.classify(images[worker % len(images)])

    load = LoadRun(
        call, workers=workers, max_calls=workers, max_duration_s=120.0, hang_after_s=HANG_AFTER_S
    )
    with load:
        load.wait_for_ok(workers)  # Returns when every call has ended.
    return load.stop()


def overload(source: Path, work: Path, scale: Scale, *, model: str = "medcnn") -> FaultRow:
    """Far more concurrent calls than the queue admits: fast typed rejections, a sane server."""
    repo = classifier_repo(
        source,
        work / "repo",
        model=model,
        queue=QueueHold(delay_us=OVERLOAD_HOLD_US, max_queue_size=scale.storm_queue),
    )
    server = start_server(repo, log_path=work / "triton.log")
    try:
        with Client(server.grpc_url, model=model, retries=0) as bare:
            images = sample_images(bare.model_info().image_size, 8, seed=2)
            before = [p.probabilities for p in bare.classify(images)]
            with watch_memory(server.pid or 0) as memory:
                storm = _storm(bare, images, scale.storm_workers)
            alive = server.is_alive()
            after = [p.probabilities for p in bare.classify(images)]
        with Client(server.grpc_url, model=model) as default:
            default.model_info()
            retried = _storm(default, images, scale.storm_workers)
    finally:
        server.stop()
    rejected = storm.typed.get(ServerOverloadedError.__name__, 0)
    slowest_rejection = max(storm.failed_latencies_s, default=0.0)
    typical_answer = statistics.median(storm.ok_latencies_s) if storm.ok_latencies_s else 0.0
    return FaultRow(
        fault=f"overload: {scale.storm_workers} calls at once, queue of {scale.storm_queue}",
        load=f"{scale.storm_workers} threads, retries=0; then SDK defaults",
        made=storm.made + retried.made,
        lost=retried.lost,
        hangs=storm.hung + retried.hung,
        failures=f"retries=0: {storm.failures()}; defaults: {retried.failures()}",
        peak_rss_mb=megabytes(memory.peak_bytes),
        outcome=(
            f"{rejected} rejected, slowest rejection {slowest_rejection * 1000:.0f} ms vs "
            f"median answer {typical_answer * 1000:.0f} ms; defaults: {retried.ok}/{retried.made} "
            "answered; server alive, answers unchanged"
        ),
        criteria={
            "rejections happened": rejected > 0,
            "every failure is ServerOverloadedError": rejected == sum(storm.typed.values())
            and not storm.untyped,
            "rejections arrive before admitted answers": slowest_rejection < typical_answer,
            "server alive": alive,
            "answers unchanged": all(
                np.allclose(a, b, atol=1e-6) for a, b in zip(before, after, strict=True)
            ),
            "0 calls lost with SDK defaults": retried.lost == 0,
            "none hangs": storm.hung + retried.hung == 0,
        },
    )


def soak(server: LocalTriton, scale: Scale, *, model: str = "medcnn") -> FaultRow:
    """Steady load; resident memory after it must stay within 10 % of before."""
    with Client(server.grpc_url, model=model) as probe:
        images = sample_images(probe.model_info().image_size, 16, seed=3)
    with closing(Callers(server.grpc_url, server.http_url, model=model, images=images)) as callers:
        warm = steady_load(callers.check, scale, scale.soak_warmup_calls)
        with warm:
            warm.wait_for_ok(scale.soak_warmup_calls)
        load = steady_load(callers.check, scale, scale.soak_calls)
        started = time.monotonic()
        with watch_memory(server.pid or 0) as memory, load:
            load.wait_for_ok(scale.soak_calls, timeout_s=scale.max_duration_s)
        tally = load.stop()
        elapsed = time.monotonic() - started
    growth = memory.growth_ratio
    return FaultRow(
        fault=f"soak: {scale.soak_calls} calls of steady load",
        load=f"{scale.workers} threads, SDK defaults, {'/'.join(PROTOCOLS)}",
        made=tally.made,
        lost=tally.lost,
        hangs=tally.hung,
        failures=tally.failures(),
        examples=tally.examples,
        peak_rss_mb=megabytes(memory.peak_bytes),
        outcome=(
            f"RSS {megabytes(memory.before_bytes):.0f} -> {megabytes(memory.after_bytes):.0f} MB "
            f"({growth:+.1%}) over {elapsed:.0f} s"
        ),
        criteria={
            "all calls made": tally.made == scale.soak_calls,
            "0 calls lost": tally.lost == 0,
            "RSS growth < 10 %": growth < SOAK_MAX_GROWTH,
        },
    )
