"""Process faults under SDK load: ``kill -9`` and restart, and SIGTERM with requests in flight.

Usage::

    row = kill_and_restart(source_repo, work_dir, SHORT)
    row = sigterm_drain(source_repo, work_dir, SHORT)

Both run on a private server holding only the classifier, so a restart costs
one TensorFlow import, and both use the SDK with its default settings (a
30 s deadline, retries until it).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from contextlib import closing
from pathlib import Path
from typing import Any

from chaos.callers import PROTOCOLS, Callers
from chaos.load import DEADLINE_S, HANG_AFTER_S, steady_load
from chaos.memory import group_peak_bytes, megabytes
from chaos.servers import (
    QueueHold,
    classifier_repo,
    kill_group,
    pending_requests,
    ports_of,
    restart_server,
    start_server,
)
from chaos.settings import Scale, sample_images
from chaos.table import FaultRow
from medserve.process_group import describe_exit_status
from medserve_client import Client, MedServeError

# How long the held requests wait in the batcher's queue (SIGTERM arrives meanwhile).
HOLD_US = 3_000_000


def kill_and_restart(source: Path, work: Path, scale: Scale, *, model: str = "medcnn") -> FaultRow:
    """``kill -9`` the server group under load and restart it on the same ports."""
    repo = classifier_repo(source, work / "repo", model=model)
    server = start_server(repo, log_path=work / "triton-first.log")
    restarted = None
    try:
        with Client(server.grpc_url, model=model) as probe:
            images = sample_images(probe.model_info().image_size, 8)
        ports = ports_of(server)
        with closing(
            Callers(server.grpc_url, server.http_url, model=model, images=images)
        ) as callers:
            load = steady_load(callers.check, scale, scale.kill_calls)
            with load:
                flowing = load.wait_for_ok(scale.flow_calls)
                killed_at = time.monotonic()
                kill_group(server)
                restarted, crashed_starts = restart_server(repo, ports=ports, log_dir=work)
                outage_s = time.monotonic() - killed_at
                resumed = load.wait_for_ok(load.tally().ok + scale.flow_calls)
            tally = load.stop()
        peak = group_peak_bytes(restarted.pid or 0)
    finally:
        server.stop()
        if restarted is not None:
            restarted.stop()
    return FaultRow(
        fault="kill -9 of server + stubs, restart on the same ports",
        load=f"{scale.workers} threads, SDK defaults, {'/'.join(PROTOCOLS)}",
        made=tally.made,
        lost=tally.lost,
        hangs=tally.hung,
        failures=tally.failures(),
        examples=tally.examples,
        peak_rss_mb=megabytes(peak),
        outcome=(
            f"outage {outage_s:.1f} s (deadline {DEADLINE_S:.0f} s); calls resumed"
            + "".join(f"; a restart crashed and was started again: {why}" for why in crashed_starts)
        ),
        criteria={
            "load flowed before the kill": flowing,
            "calls flowed after the restart": resumed,
            "outage shorter than the deadline": outage_s < DEADLINE_S,
            "0 calls lost": tally.lost == 0,
            "none hangs": tally.hung == 0,
            "every failure typed": not tally.untyped,
        },
    )


def sigterm_drain(source: Path, work: Path, scale: Scale, *, model: str = "medcnn") -> FaultRow:
    """SIGTERM while requests wait in the batcher's queue: each must still be answered."""
    repo = classifier_repo(
        source,
        work / "repo",
        model=model,
        queue=QueueHold(delay_us=HOLD_US, max_queue_size=scale.held_requests),
    )
    # Triton waits up to --exit-timeout-secs for requests in flight; the
    # held ones need HOLD_US of it.
    server = start_server(repo, log_path=work / "triton.log", exit_timeout_s=30)
    results: list[BaseException | None] = []
    lock = threading.Lock()
    try:
        with Client(server.grpc_url, model=model) as client:
            info = client.model_info()
            images = sample_images(info.image_size, scale.held_requests, seed=1)
            expected = [p.label for p in client.classify(images)]

            def one(index: int) -> None:
                outcome: BaseException | None = None
                try:
                    (prediction,) = client.classify(images[index])
                    if prediction.label != expected[index]:
                        outcome = AssertionError(f"image {index}: {prediction.label}")
                except BaseException as exc:
                    outcome = exc
                with lock:
                    results.append(outcome)

            threads = [
                threading.Thread(target=one, args=(i,), daemon=True)
                for i in range(scale.held_requests)
            ]
            for thread in threads:
                thread.start()
            held = _wait_until_pending(server, model, scale.held_requests)
            peak = group_peak_bytes(server.pid or 0)
            os.kill(server.pid or 0, signal.SIGTERM)
            signalled_at = time.monotonic()
            late = _late_call(server.grpc_url, model, images[0])
            for thread in threads:
                thread.join(HANG_AFTER_S)
            hangs = sum(thread.is_alive() for thread in threads)
            status = server.wait(timeout_s=60.0)
            exit_s = time.monotonic() - signalled_at
    finally:
        server.stop()
    answered = sum(outcome is None for outcome in results)
    failed = [outcome for outcome in results if outcome is not None]
    typed = [type(e).__name__ for e in failed if isinstance(e, MedServeError)]
    untyped = [type(e).__name__ for e in failed if not isinstance(e, MedServeError)]
    failures = ", ".join(sorted(typed) + [f"untyped {name}" for name in sorted(untyped)]) or "-"
    return FaultRow(
        fault="SIGTERM with requests queued (--exit-timeout-secs=30)",
        load=f"{scale.held_requests} requests held {HOLD_US / 1e6:.0f} s in the batcher's queue",
        made=scale.held_requests,
        lost=len(failed) + hangs,
        hangs=hangs,
        failures=failures,
        peak_rss_mb=megabytes(peak),
        outcome=(
            f"drained: {answered}/{scale.held_requests} in-flight answered, server "
            f"{describe_exit_status(status)} {exit_s:.1f} s after SIGTERM; "
            f"a new call during the drain: {late}"
        ),
        criteria={
            "requests were in flight": held,
            "every in-flight request answered": answered == scale.held_requests,
            "none hangs": hangs == 0,
            "clean exit": status == 0,
        },
    )


def _late_call(url: str, model: str, image: Any) -> str:
    """How a new call (no retries) sent right after SIGTERM ends: reported, not judged."""
    try:
        with Client(url, model=model, retries=0, timeout_s=10.0) as client:
            client.classify(image)
    except MedServeError as exc:
        return f"refused ({type(exc).__name__})"
    return "answered"


def _wait_until_pending(server: object, model: str, count: int, timeout_s: float = 60.0) -> bool:
    """Poll Triton's pending-request gauge until ``count`` requests wait in the queue."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pending_requests(server, model) >= count:  # type: ignore[arg-type]
            return True
        time.sleep(0.05)  # A poll interval, not a synchronisation: the gauge decides.
    return False
