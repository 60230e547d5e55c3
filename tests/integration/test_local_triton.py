"""LocalTriton and ``medserve serve`` against real tritonserver processes: faults and cleanup.

Usage::

    .venv/bin/pytest tests/integration/test_local_triton.py

These tests start their own short-lived servers on a copy of the exported
classifier alone (one backend stub, so they start faster than the session's).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from cli_process import stop_cli

from medserve.errors import ServerError, UsageError
from medserve.local_triton import LocalTriton
from medserve.model_config import parse_config
from medserve.process_group import group_members
from medserve.spec import SAVEDMODEL_DIRNAME, ModelSpec

pytestmark = pytest.mark.integration

SHM_DIR = Path("/dev/shm")
CLI_READY_TIMEOUT_S = 240.0


def _classifier_only_repo(served_repo: Path, spec: ModelSpec, target: Path) -> Path:
    """A repository with just the exported classifier (no decoder, no ensemble)."""
    shutil.copytree(served_repo / spec.name, target / spec.name)
    return target


def _infer_ok(url: str, spec: ModelSpec) -> np.ndarray:
    images = np.zeros((1, *spec.input_shape), dtype=np.uint8)
    tensor = grpcclient.InferInput(spec.input_name, list(images.shape), "UINT8")
    tensor.set_data_from_numpy(images)
    with grpcclient.InferenceServerClient(url) as client:
        return client.infer(spec.name, [tensor]).as_numpy(spec.output_name)


@pytest.fixture(scope="module")
def second_server(
    served_repo: Path, served_spec: ModelSpec, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalTriton]:
    """A second server on the same machine as the session's (killed by a test below)."""
    root = tmp_path_factory.mktemp("second_server")
    repo = _classifier_only_repo(served_repo, served_spec, root / "repo")
    server = LocalTriton(repo, startup_timeout_s=240.0, log_path=root / "tritonserver.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_start_refuses_a_directory_that_is_not_a_model_repository(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not a Triton model repository"):
        LocalTriton(tmp_path).start()
    with pytest.raises(UsageError, match="does not exist"):
        LocalTriton(tmp_path / "missing").start()


def test_start_refuses_a_tritonserver_path_that_is_not_executable(
    served_repo: Path, tmp_path: Path
) -> None:
    with pytest.raises(UsageError, match="is not an executable file"):
        LocalTriton(served_repo, tritonserver=tmp_path / "tritonserver").start()


def test_start_reports_a_port_already_in_use(served_repo: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]

        server = LocalTriton(served_repo, grpc_port=port)
        with pytest.raises(ServerError, match=f"grpc port {port} is already in use"):
            server.start()
    assert not server.is_alive()


def test_a_port_taken_after_the_check_is_reported_from_the_server_log(
    served_repo: Path,
    served_spec: ModelSpec,
    tmp_path: Path,
    start_server: Callable[..., LocalTriton],
) -> None:
    repo = _classifier_only_repo(served_repo, served_spec, tmp_path / "repo")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]

        # A later flag wins: the launcher's own check sees a free port, the
        # server then meets the busy one, as when another process wins a race.
        with pytest.raises(ServerError, match=f"a port is already in use: .*:{port}"):
            start_server(repo, extra_args=[f"--grpc-port={port}"])


def test_a_port_the_launcher_chose_but_lost_before_triton_bound_it_is_replaced(
    served_repo: Path,
    served_spec: ModelSpec,
    tmp_path: Path,
    start_server: Callable[..., LocalTriton],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import medserve.local_triton as launcher

    repo = _classifier_only_repo(served_repo, served_spec, tmp_path / "repo")
    real_free_ports = launcher.free_ports
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        offered: list[list[int]] = []

        def lose_one_race(count: int, host: str) -> list[int]:
            # The first pick hands out a port another process already holds,
            # as when a client's connection takes it after the probe.
            ports = real_free_ports(count, host)
            if not offered:
                ports[0] = port
            offered.append(ports)
            return ports

        monkeypatch.setattr(launcher, "free_ports", lose_one_race)
        server = start_server(repo)

        assert len(offered) == 2 and port not in (server.http_port, server.grpc_port)
        np.testing.assert_array_equal(
            _infer_ok(server.grpc_url, served_spec).shape, (1, served_spec.num_classes)
        )


def test_start_fails_fast_with_the_reason_when_a_model_cannot_load(
    served_repo: Path,
    served_spec: ModelSpec,
    tmp_path: Path,
    start_server: Callable[..., LocalTriton],
) -> None:
    repo = _classifier_only_repo(served_repo, served_spec, tmp_path / "repo")
    version_dir = max((repo / served_spec.name).glob("[0-9]*"), key=lambda p: int(p.name))
    # Break the artifact that configs/local.pbtxt's runtime loads.
    local = parse_config(repo / served_spec.name / "configs" / "local.pbtxt")
    if local.parameters["runtime"].string_value == "onnxruntime":
        (version_dir / "model.onnx").unlink()
        reason = "no model.onnx at"
    else:
        (version_dir / SAVEDMODEL_DIRNAME / "saved_model.pb").unlink()
        reason = "saved_model.pb is missing"

    with pytest.raises(ServerError) as caught:
        start_server(repo)

    # "exited with status", not "was not ready within": the launcher reported
    # the server's own exit (--exit-on-error) instead of waiting out its timeout.
    message = str(caught.value)
    assert "exited with status" in message and "was not ready within" not in message
    assert served_spec.name in message and reason in message


def test_two_servers_on_one_machine_use_distinct_ports_and_shared_memory(
    local_triton: LocalTriton, second_server: LocalTriton, served_spec: ModelSpec
) -> None:
    first_ports = {local_triton.http_port, local_triton.grpc_port, local_triton.metrics_port}
    second_ports = {second_server.http_port, second_server.grpc_port, second_server.metrics_port}
    assert len(first_ports) == 3 and len(second_ports) == 3
    assert not first_ports & second_ports
    assert local_triton.shm_prefix != second_server.shm_prefix
    assert list(SHM_DIR.glob(second_server.shm_prefix + "*"))  # The stub's region.

    np.testing.assert_allclose(
        _infer_ok(local_triton.grpc_url, served_spec),
        _infer_ok(second_server.grpc_url, served_spec),
        rtol=0,
        atol=1e-5,
    )


def test_killing_the_server_process_is_detected_and_leaves_no_orphan(
    second_server: LocalTriton,
) -> None:
    pgid = second_server.pid
    assert pgid is not None and len(group_members(pgid)) >= 2  # Server and its stub.
    shm_prefix = second_server.shm_prefix

    os.kill(pgid, signal.SIGKILL)
    assert second_server.wait(timeout_s=30) == -signal.SIGKILL

    assert not second_server.is_alive()
    with pytest.raises(ServerError, match="was killed by SIGKILL"):
        second_server.check_alive()
    second_server.stop()
    assert group_members(pgid) == []
    assert list(SHM_DIR.glob(shm_prefix + "*")) == []


_PARENT_SCRIPT = """
import sys, time
from pathlib import Path
from medserve.local_triton import LocalTriton
from medserve.model_config import parse_config
server = LocalTriton(Path(sys.argv[1]), startup_timeout_s=float(sys.argv[2]))
server.start()
print("pid", server.pid, flush=True)
time.sleep(600)
"""


def test_server_stops_when_the_process_that_started_it_is_killed(
    served_repo: Path, served_spec: ModelSpec, tmp_path: Path
) -> None:
    repo = _classifier_only_repo(served_repo, served_spec, tmp_path / "repo")
    command = [sys.executable, "-c", _PARENT_SCRIPT, str(repo), str(CLI_READY_TIMEOUT_S)]
    parent = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        (line,) = _read_until(parent, "pid", CLI_READY_TIMEOUT_S + 30)[-1:]
        pgid = int(line.split()[1])
        assert group_members(pgid)

        parent.kill()  # No cleanup code runs: only PR_SET_PDEATHSIG is left.
        parent.wait(timeout=30)
        deadline = time.monotonic() + 60
        while group_members(pgid) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert group_members(pgid) == []
    finally:
        stop_cli(parent)


def _read_until(proc: subprocess.Popen[str], marker: str, timeout_s: float) -> list[str]:
    """Lines of ``proc``'s stdout up to the one containing ``marker``."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout_s
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            stderr = proc.stderr.read() if proc.stderr else ""
            raise AssertionError(f"medserve serve exited early: {lines} {stderr}")
        lines.append(line.rstrip("\n"))
        if marker in line:
            return lines
    raise AssertionError(f"no {marker!r} from medserve serve; got: {lines}")


def test_serve_cli_follows_logs_prints_urls_and_stops_cleanly_on_sigterm(
    served_repo: Path, served_spec: ModelSpec, tmp_path: Path
) -> None:
    repo = _classifier_only_repo(served_repo, served_spec, tmp_path / "repo")
    # The console script a user runs, from this interpreter's environment.
    command = [str(Path(sys.executable).with_name("medserve")), "serve", str(repo)]
    command += ["--startup-timeout-s", str(CLI_READY_TIMEOUT_S), "--follow-logs"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = _read_until(proc, "stop with Ctrl-C", CLI_READY_TIMEOUT_S + 30)
        fields = dict(line.split(None, 1) for line in lines if line.startswith("  "))
        pgid = int(fields["pid"])
        _infer_ok(fields["gRPC"], served_spec)

        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        stop_cli(proc)

    assert proc.returncode == 0, stderr
    assert "SIGTERM: stopping tritonserver" in stdout
    # --follow-logs: the server's own lines, copied from its log file.
    assert "Started GRPCInferenceService" in "\n".join(lines) + stdout
    assert group_members(pgid) == []
