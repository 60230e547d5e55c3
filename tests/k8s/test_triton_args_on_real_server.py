"""Triton's args from the rendered manifests, run by a real ``tritonserver``.

No cluster and no GPU here, so the server is the one the export side already
uses locally: the ``tritonserver`` of the nvidia-pytriton wheel (Triton 2.51,
CPU only, Python backend only). Each overlay's args are started on it, with the
Kubernetes variables filled in (an empty model repository, a key) and the ports
moved to free ones so it coexists with other servers on the machine. What this
proves, per overlay: every flag exists in 2.51, every value parses, readiness
works with no model, and the restricted-API key really closes the admin
endpoints while health and metadata stay open.

KServe's predictor is started the same way, with the args KServe gives it
(the ServingRuntime's, then the InferenceService's; see kserve_predictor).

The ONNX overlays' and KServe's ``--load-model`` args are not passed: they
name the models of an exported repository and the one here is empty, so
Triton would refuse to start; the names are checked against the exporter's in
test_policy_triton, and the flag against ``--help`` here.

What it cannot prove: that the images the overlays run (25.02 = Triton 2.55,
26.09 = Triton 2.73) accept the args (test_policy_triton checks every flag
against the flag lists of those releases' own parser, vendored in
k8s/schemas/tritonserver-flags.json), nor that a model loads under
``--model-config-name``: the wheel has neither the TensorFlow nor the
onnxruntime backend, and the repository here is empty, so the selected
config name (``cpu``, ``onnx-cpu``, ``onnx-gpu``) is accepted but never read.
"""

from __future__ import annotations

import re
import secrets
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from k8s_render import NEWER_THAN_THE_WHEEL, OVERLAYS, Render, containers
from kserve_predictor import predictor_pod

from medserve.ports import free_ports
from medserve.stub import TritonInstall, locate_tritonserver, server_environment

pytestmark = pytest.mark.k8s

READY_TIMEOUT_S = 60
STOP_TIMEOUT_S = 40
ADMIN_HEADER = "medserve-admin-key"
# Triton's --log-format=ISO8601 lines: "2026-11-28T16:57:00Z I 1234 file.cc:12] ..."
ISO8601_LINE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z [IWE] ")
PORT_FLAGS = ("http-port", "grpc-port", "metrics-port")
KSERVE = "kserve"
# Flags whose values need an exported repository (see server_args).
NOT_STARTED = {"load-model"}


@dataclass(frozen=True)
class RunningTriton:
    """A started server: its HTTP base URL, admin key and log file."""

    http: str
    admin_key: str
    log: Path


def triton_container(renders: dict[str, Render], name: str) -> dict[str, Any]:
    """The Triton container of an overlay's Deployment, or of KServe's predictor Pod."""
    if name == KSERVE:
        return containers(predictor_pod(renders[KSERVE]))[0]
    return containers(renders[name].one("Deployment", "triton"))[0]


def server_args(
    container: dict[str, Any], values: dict[str, str], replaced: dict[str, str]
) -> list[str]:
    """The container's args with $(VAR) filled in and the ``replaced`` flags' values swapped.

    ``--load-model`` is left out: it names models of an exported repository,
    and this one is empty (test_policy_triton checks the names instead).
    """
    program, *flags = container["args"]
    assert program == "tritonserver"
    args = []
    for flag in flags:
        name = flag[2:].split("=", 1)[0]
        if name in NOT_STARTED or name in NEWER_THAN_THE_WHEEL:
            continue
        if name in replaced:
            flag = f"--{name}={replaced[name]}"
        args.append(re.sub(r"\$\((\w+)\)", lambda m: values[m.group(1)], flag))
    return args


def tritonserver_flags(binary: Path, env: dict[str, str]) -> set[str]:
    """Every ``--flag`` that ``tritonserver --help`` lists."""
    proc = subprocess.run(
        [str(binary), "--help"], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    return set(re.findall(r"^\s+--([a-z0-9-]+)", proc.stdout + proc.stderr, flags=re.MULTILINE))


def http_status(url: str, *, method: str = "GET", headers: dict[str, str] | None = None) -> int:
    """HTTP status of one request (no exception for 4xx/5xx)."""
    req = urllib.request.Request(
        url, method=method, headers=headers or {}, data=b"" if method == "POST" else None
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


@pytest.fixture(scope="module")
def install() -> TritonInstall:
    """The nvidia-pytriton wheel's tritonserver (or $TRITONSERVER)."""
    return locate_tritonserver()


@pytest.fixture(scope="module", params=[*OVERLAYS, KSERVE])
def running_triton(
    request: pytest.FixtureRequest,
    renders: dict[str, Render],
    install: TritonInstall,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningTriton]:
    """The wheel's tritonserver with the args of one overlay (or of KServe's predictor)."""
    work = tmp_path_factory.mktemp(f"triton-{request.param}")
    repository = work / "model_repository"
    repository.mkdir()
    key = secrets.token_hex(16)
    ports = dict(zip(PORT_FLAGS, free_ports(3), strict=True))
    args = server_args(
        triton_container(renders, request.param),
        {"MODEL_REPOSITORY": str(repository), "TRITON_ADMIN_KEY": key},
        {**{flag: str(port) for flag, port in ports.items()}, "model-repository": str(repository)},
    )
    log = work / "triton.log"
    with log.open("w") as sink:
        process = subprocess.Popen(
            [str(install.binary), *args],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=server_environment(install),
        )
    http = f"http://127.0.0.1:{ports['http-port']}"
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"tritonserver exited {process.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if http_status(f"{http}/v2/health/ready") == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"tritonserver not ready in {READY_TIMEOUT_S} s:\n{log.read_text()[-3000:]}"
                )
            time.sleep(0.5)
        yield RunningTriton(http=http, admin_key=key, log=log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_every_triton_flag_in_the_manifests_exists_in_tritonserver(
    overlay_renders: list[Render],
    renders: dict[str, Render],
    install: TritonInstall,
) -> None:
    known = tritonserver_flags(install.binary, server_environment(install))
    assert {"model-repository", "http-restricted-api"} <= known, "could not read --help"
    named = [(r.name, containers(r.one("Deployment", "triton"))[0]) for r in overlay_renders]
    named.append((KSERVE, triton_container(renders, KSERVE)))
    for name, container in named:
        used = {arg[2:].split("=", 1)[0] for arg in container["args"][1:]}
        unknown = used - known - set(NEWER_THAN_THE_WHEEL)
        assert not unknown, f"{name}: unknown flags {sorted(unknown)}"
    assert not set(NEWER_THAN_THE_WHEEL) & known, "the wheel has caught up: drop the exemption"


def test_triton_with_the_manifest_args_is_live_and_ready(running_triton: RunningTriton) -> None:
    assert http_status(f"{running_triton.http}/v2/health/live") == 200
    assert http_status(f"{running_triton.http}/v2/health/ready") == 200
    assert http_status(f"{running_triton.http}/v2") == 200  # server metadata stays open


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v2/repository/index"),  # model-repository
        ("GET", "/v2/models/stats"),  # statistics
        ("GET", "/v2/trace/setting"),  # trace
        ("GET", "/v2/logging"),  # logging
        ("GET", "/v2/systemsharedmemory/status"),  # shared-memory
    ],
)
def test_admin_endpoints_answer_only_with_the_admin_key(
    running_triton: RunningTriton, method: str, path: str
) -> None:
    url = running_triton.http + path
    assert http_status(url, method=method) == 403
    assert http_status(url, method=method, headers={ADMIN_HEADER: "wrong"}) == 403
    assert http_status(url, method=method, headers={ADMIN_HEADER: running_triton.admin_key}) == 200


def test_triton_logs_in_iso8601(running_triton: RunningTriton) -> None:
    lines = [line for line in running_triton.log.read_text().splitlines() if line.strip()]
    stamped = [line for line in lines if ISO8601_LINE.match(line)]
    assert stamped, lines[:5]
    assert any("Started HTTPService" in line for line in stamped)
