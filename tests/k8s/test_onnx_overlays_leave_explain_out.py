"""The ONNX overlays' model args on a real tritonserver and a real exported repository.

Triton refuses to start when any model of the repository fails to load.
``medcnn_explain`` (Grad-CAM, a SavedModel with gradient ops) has configs only
for the TensorFlow config names (``EXPLAIN_CONFIG_KINDS``); under ``onnx-cpu``
it falls back to ``config.pbtxt``, the TensorFlow backend, which Triton 26.09
does not have. The ONNX overlays therefore load their models by name
(``--model-control-mode=explicit`` and one ``--load-model`` each).

This starts the wheel's ``tritonserver`` (Triton 2.51, Python backend only, no
TensorFlow or onnxruntime backend, like 26.09 has no TensorFlow backend) with
the cpu-onnx overlay's args on a repository exported by ``medserve export``.
The wheel cannot run ``model.onnx``, so the classifier's ``onnx-cpu`` config
is its ``local`` one (Python backend): what matters here is that the models
the overlay names load, and that the explain model, which would fail, is left
out. The control run with ``--model-control-mode=none`` shows that it would
fail the server otherwise.
"""

from __future__ import annotations

import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from k8s_render import NEWER_THAN_THE_WHEEL, Render, containers

from medserve.model_config import EXPLAIN_CONFIG_KINDS, config_path
from medserve.ports import free_ports
from medserve.stub import ensure_python_stub, locate_tritonserver, server_environment

pytestmark = [pytest.mark.k8s, pytest.mark.slow]

OVERLAY = "cpu-onnx"
CONFIG_NAME = "onnx-cpu"
READY_TIMEOUT_S = 240
STOP_TIMEOUT_S = 40
PORT_FLAGS = ("http-port", "grpc-port", "metrics-port")


@pytest.fixture(scope="module")
def onnx_like_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny exported repository with ``onnx-cpu`` configs the wheel can load."""
    from medserve.exporter import export_model
    from medserve.model import build_reference_cnn
    from medserve.spec import ModelSpec

    spec = ModelSpec(labels=("normal", "lesion"), image_size=(32, 32), max_batch_size=4)
    model = build_reference_cnn((32, 32, 3), 2, filters=(4, 8, 8), dense_units=8)
    repo = tmp_path_factory.mktemp("onnx_like") / "model_repository"
    export_model(model, repo, spec)
    assert CONFIG_NAME not in EXPLAIN_CONFIG_KINDS
    for name in (spec.name, spec.name + "_preprocess"):
        target = repo / name / "configs" / f"{CONFIG_NAME}.pbtxt"
        shutil.copyfile(config_path(repo / name, "local"), target)
    assert not (repo / spec.explain_name / "configs" / f"{CONFIG_NAME}.pbtxt").exists()
    return repo


def overlay_args(render: Render, repo: Path, ports: dict[str, int], key: str) -> list[str]:
    """The overlay's Triton args, with the repository, a key and free ports filled in."""
    program, *flags = containers(render.one("Deployment", "triton"))[0]["args"]
    assert program == "tritonserver"
    values = {"MODEL_REPOSITORY": str(repo), "TRITON_ADMIN_KEY": key}
    replaced = {flag: str(port) for flag, port in ports.items()}
    args = []
    for flag in flags:
        name = flag[2:].split("=", 1)[0]
        if name in NEWER_THAN_THE_WHEEL:
            continue
        if name in replaced:
            flag = f"--{name}={replaced[name]}"
        args.append(re.sub(r"\$\((\w+)\)", lambda m: values[m.group(1)], flag))
    return args


def http_ok(url: str) -> bool:
    """Whether a GET answers 200."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


class Server:
    """The wheel's tritonserver with given args; stopped by :meth:`stop`."""

    def __init__(self, args: list[str], log: Path, http_port: int) -> None:
        install = locate_tritonserver()
        extra = [f"--backend-config=python,shm-region-prefix-name=k8s_{secrets.token_hex(4)}_"]
        backend_dir = ensure_python_stub(install)
        if backend_dir is not None:
            extra.append(f"--backend-directory={backend_dir}")
        self.http = f"http://127.0.0.1:{http_port}"
        self.log = log
        with log.open("w") as sink:
            self.process = subprocess.Popen(
                [str(install.binary), *args, *extra],
                stdout=sink,
                stderr=subprocess.STDOUT,
                env=server_environment(install),
            )

    def wait_ready(self) -> bool:
        """True once ready; False if the process exits first or time runs out."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            if http_ok(f"{self.http}/v2/health/ready"):
                return True
            time.sleep(0.5)
        return False

    def stop(self) -> None:
        """Terminate, then kill if it does not stop in time."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Any]:
    """``start(render, repo, drop=flag, **{flag: value})`` -> a started :class:`Server`.

    ``drop`` removes every ``--<drop>=`` arg; keyword overrides replace a
    flag's value. Every server is stopped at teardown.
    """
    servers: list[Server] = []

    def run(render: Render, repo: Path, *, drop: str = "", **override: str) -> Server:
        ports = dict(zip(PORT_FLAGS, free_ports(3), strict=True))
        args = overlay_args(render, repo, ports, secrets.token_hex(16))
        args = [a for a in args if not (drop and a.startswith(f"--{drop}="))]
        for name, value in override.items():
            args = [f"--{name}={value}" if a.startswith(f"--{name}=") else a for a in args]
        server = Server(args, tmp_path / f"triton-{len(servers)}.log", ports["http-port"])
        servers.append(server)
        return server

    try:
        yield run
    finally:
        for server in servers:
            server.stop()


def test_cpu_onnx_args_load_the_named_models_and_leave_the_explain_model_out(
    renders: dict[str, Render], onnx_like_repo: Path, start: Any
) -> None:
    server = start(renders[OVERLAY], onnx_like_repo)
    ready = server.wait_ready()
    assert ready, server.log.read_text()[-3000:]
    for model in ("medcnn", "medcnn_preprocess", "medcnn_encoded"):
        assert http_ok(f"{server.http}/v2/models/{model}/ready"), model
    assert not http_ok(f"{server.http}/v2/models/medcnn_explain/ready")


def test_without_explicit_loading_the_explain_model_would_fail_the_server(
    renders: dict[str, Render], onnx_like_repo: Path, start: Any
) -> None:
    server = start(
        renders[OVERLAY], onnx_like_repo, drop="load-model", **{"model-control-mode": "none"}
    )
    assert not server.wait_ready()
    server.stop()
    log = server.log.read_text()
    assert server.process.returncode != 0
    assert re.search(r"medcnn_explain.*(fail|unable|not found)", log, re.I), log[-3000:]
