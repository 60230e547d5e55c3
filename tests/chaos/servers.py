"""The servers the faults are done to: repository variants and process-level faults.

Usage::

    repo = classifier_repo(source_repo, tmp / "kill", model="medcnn")
    queued = classifier_repo(source_repo, tmp / "queue", model="medcnn",
                             queue=QueueHold(delay_us=2_000_000, max_queue_size=8))
    server = start_server(repo, log_path=tmp / "kill" / "triton.log")
    kill_group(server)                      # kill -9 of tritonserver and its stubs
    again = start_server(repo, ports=ports_of(server), log_path=...)

Only the classifier is copied into a variant (each Python-backend model costs
a TensorFlow import at start-up, seconds on a shared machine), and its
``configs/local.pbtxt`` is edited as a ``ModelConfig`` protobuf.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medserve.errors import ServerError
from medserve.local_triton import LocalTriton
from medserve.model_config import parse_config, to_text

# Generous: every backend stub imports TensorFlow, on 2 cores shared with the load.
STARTUP_TIMEOUT_S = 240.0
LOCAL_CONFIG = Path("configs") / "local.pbtxt"


@dataclass(frozen=True)
class QueueHold:
    """A batcher that holds requests: it waits ``delay_us`` for a full batch, queues few.

    With ``max_queue_size`` below the preferred (= maximum) batch size the
    batch never fills, so every admitted request waits the whole delay, and
    requests beyond the queue are rejected at once.
    """

    delay_us: int
    max_queue_size: int


def classifier_repo(
    source: Path, target: Path, *, model: str, queue: QueueHold | None = None
) -> Path:
    """Copy the classifier ``model`` of ``source`` into a repository of its own."""
    shutil.copytree(source / model, target / model)
    if queue is not None:
        path = target / model / LOCAL_CONFIG
        config = parse_config(path)
        batching = config.dynamic_batching
        del batching.preferred_batch_size[:]
        batching.preferred_batch_size.append(config.max_batch_size)
        batching.max_queue_delay_microseconds = queue.delay_us
        batching.default_queue_policy.max_queue_size = queue.max_queue_size
        path.write_text(to_text(config))
    return target


def start_server(
    repo: Path,
    *,
    log_path: Path,
    ports: dict[str, int] | None = None,
    exit_timeout_s: int = 10,
) -> LocalTriton:
    """Start a LocalTriton on ``repo`` (on ``ports`` when given) and wait until it is ready."""
    ports = ports or {}
    server = LocalTriton(
        repo,
        http_port=ports.get("http"),
        grpc_port=ports.get("grpc"),
        metrics_port=ports.get("metrics"),
        startup_timeout_s=STARTUP_TIMEOUT_S,
        exit_timeout_s=exit_timeout_s,
        log_path=log_path,
    )
    server.start()
    return server


# A supervisor (the kubelet, systemd) starts a crashed server again; so does
# the restart here. Triton 2.51 has been seen to abort once while starting
# under heavy CPU load (gRPC "epoll_wait error: Bad file descriptor" in its
# own log), which has nothing to do with the client behaviour under test.
RESTART_ATTEMPTS = 3


def restart_server(
    repo: Path, *, ports: dict[str, int], log_dir: Path
) -> tuple[LocalTriton, list[str]]:
    """Start a server on ``ports`` as a restart policy would: again if a start crashes.

    Args:
        repo: The model repository.
        ports: The ports of the server that went away.
        log_dir: Where each start writes its log (``triton-restart-N.log``).

    Returns:
        The ready server and, for each start that crashed first, why it did.

    Raises:
        ServerError: When every one of ``RESTART_ATTEMPTS`` starts crashed.
    """
    crashed: list[str] = []
    for attempt in range(1, RESTART_ATTEMPTS + 1):
        try:
            server = start_server(
                repo, ports=ports, log_path=log_dir / f"triton-restart-{attempt}.log"
            )
        except ServerError as exc:
            crashed.append(str(exc).splitlines()[0])
            if attempt == RESTART_ATTEMPTS:
                raise
            continue
        return server, crashed
    raise AssertionError("unreachable: the last attempt returns or raises")


def ports_of(server: LocalTriton) -> dict[str, int]:
    """The ports a server listens on, to restart another on the same ones."""
    return {"http": server.http_port, "grpc": server.grpc_port, "metrics": server.metrics_port}


def kill_group(server: LocalTriton) -> None:
    """``kill -9`` the server and its backend stubs (a crash, an OOM kill), then reap them."""
    pid = server.pid
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    server.stop()  # Reaps the group and removes the shared memory it left.


def pending_requests(server: LocalTriton, model: str) -> int:
    """Requests of ``model`` waiting in the server's queue (Triton's pending-request gauge)."""
    with urllib.request.urlopen(server.metrics_url, timeout=5.0) as response:
        text = response.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("nv_inference_pending_request_count{") and f'model="{model}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


def served_models(server: LocalTriton) -> dict[str, Any]:
    """Every model the server has ready, with its metadata (inputs, datatypes, shapes)."""
    import tritonclient.grpc as grpcclient

    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        return {
            name: client.get_model_metadata(name, as_json=True) for name in sorted(server.models)
        }
