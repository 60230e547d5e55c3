"""Run the real ``tritonserver`` on a model repository, on this machine, with no Docker.

Usage::

    with LocalTriton(Path("model_repository")) as server:
        client = tritonclient.grpc.InferenceServerClient(server.grpc_url)
        ...
    # stopped: no tritonserver or backend stub process is left

    server = LocalTriton(repo, grpc_port=8001, tritonserver="/opt/tritonserver/bin/tritonserver")
    server.start()          # blocks until the server and every model are ready
    server.check_alive()    # raises ServerError if the process died
    server.stop()

By default the binary is the one in the ``nvidia-pytriton`` wheel (CPU, Python
backend); ``tritonserver=`` or ``$TRITONSERVER`` selects a native install. The
server reads ``<model>/configs/local.pbtxt`` (``--model-config-name``), accepts
no model loading from outside (``--model-control-mode=none``; a private server
such as the tuner's may ask for ``explicit``, loading every model at start),
reports ready
only when every model is (``--strict-readiness=true``) and listens on the given
ports or free ones. Two servers on one machine differ in ports and in the
Python backend's shared-memory prefix. Everything the server, its backends and
the stubs print goes to one log file; failures quote its relevant lines.
"""

from __future__ import annotations

import logging
import re
import secrets
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Literal

from medserve.errors import ServerError, UsageError
from medserve.http_probe import http_json, http_ok
from medserve.ports import free_ports, port_in_use
from medserve.process_group import (
    describe_exit_status,
    remove_shared_memory,
    spawn_group,
    stop_group,
)
from medserve.server_log import explain_failure, tail_lines
from medserve.stub import (
    TritonInstall,
    ensure_python_stub,
    locate_tritonserver,
    server_environment,
)

log = logging.getLogger(__name__)

DEFAULT_CONFIG_NAME = "local"
ModelControlMode = Literal["none", "explicit"]
DEFAULT_HOST = "127.0.0.1"
LOG_FILENAME = "tritonserver.log"
_POLL_S = 0.25
_PORT_ATTEMPTS = 3


class LocalTriton:
    """A ``tritonserver`` process serving one model repository.

    Use as a context manager, or call :meth:`start` and :meth:`stop` (in a
    ``finally``). Not thread safe: one owner starts and stops it.
    """

    def __init__(
        self,
        repo: Path,
        *,
        http_port: int | None = None,
        grpc_port: int | None = None,
        metrics_port: int | None = None,
        tritonserver: str | Path | None = None,
        config_name: str = DEFAULT_CONFIG_NAME,
        host: str = DEFAULT_HOST,
        startup_timeout_s: float = 120.0,
        exit_timeout_s: int = 10,
        log_path: Path | None = None,
        extra_args: Sequence[str] = (),
        admin_headers: Mapping[str, str] | None = None,
        model_control_mode: ModelControlMode = "none",
    ) -> None:
        """Describe the server; nothing starts until :meth:`start`.

        Args:
            repo: The model repository (written by ``medserve export``).
            http_port: HTTP/REST port; None picks a free one.
            grpc_port: gRPC port; None picks a free one.
            metrics_port: Prometheus metrics port; None picks a free one.
            tritonserver: Path of a ``tritonserver`` binary (default:
                ``$TRITONSERVER``, else the nvidia-pytriton wheel's).
            config_name: Which ``configs/<name>.pbtxt`` each model uses
                (models without one use ``config.pbtxt``).
            host: Address to listen on; the default keeps the server local.
            startup_timeout_s: How long to wait for the server and every model.
            exit_timeout_s: How long Triton waits for in-flight requests when
                stopping; the launcher kills it 10 s after that.
            log_path: Server log file (default: a new temporary directory).
            extra_args: More ``tritonserver`` flags, appended as given (never
                logged: they may hold an admin key).
            admin_headers: Headers that open the admin APIs when ``extra_args``
                restrict them (the launcher reads the repository index).
            model_control_mode: ``"none"`` (nobody loads code into the server)
                or ``"explicit"`` (every model loads at start, and the
                repository API may load others or reload with a config
                override: only for a private server on loopback).
        """
        if model_control_mode not in ("none", "explicit"):
            raise UsageError(
                f"model_control_mode must be none or explicit, not {model_control_mode!r}"
            )
        self.repo = Path(repo)
        self.config_name = config_name
        self.host = host
        self.startup_timeout_s = startup_timeout_s
        self.exit_timeout_s = exit_timeout_s
        self._requested_ports = {"http": http_port, "grpc": grpc_port, "metrics": metrics_port}
        self._ports: dict[str, int] = {}
        self._tritonserver = tritonserver
        self._log_path = Path(log_path) if log_path is not None else None
        self._extra_args = tuple(extra_args)
        self._admin_headers = dict(admin_headers or {})
        self._control_args = (
            ["--model-control-mode=explicit", "--load-model=*"]
            if model_control_mode == "explicit"
            else ["--model-control-mode=none"]
        )
        self._proc: subprocess.Popen[bytes] | None = None
        self._shm_prefix = ""
        self.models: dict[str, str] = {}

    # -- addresses -------------------------------------------------------

    def _port(self, kind: str) -> int:
        if kind not in self._ports:
            raise ServerError(f"the server is not started: no {kind} port yet")
        return self._ports[kind]

    @property
    def _client_host(self) -> str:
        # A server on all interfaces is reached on loopback from here.
        return "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host

    @property
    def http_port(self) -> int:
        """HTTP/REST port."""
        return self._port("http")

    @property
    def grpc_port(self) -> int:
        """gRPC port."""
        return self._port("grpc")

    @property
    def metrics_port(self) -> int:
        """Prometheus metrics port."""
        return self._port("metrics")

    @property
    def grpc_url(self) -> str:
        """``host:port`` for ``tritonclient.grpc.InferenceServerClient``."""
        return f"{self._client_host}:{self.grpc_port}"

    @property
    def http_address(self) -> str:
        """``host:port`` for ``tritonclient.http.InferenceServerClient`` (no scheme)."""
        return f"{self._client_host}:{self.http_port}"

    @property
    def http_url(self) -> str:
        """``http://host:port`` of the KServe v2 REST API."""
        return f"http://{self.http_address}"

    @property
    def metrics_url(self) -> str:
        """``http://host:port/metrics`` (Prometheus text format)."""
        return f"http://{self._client_host}:{self.metrics_port}/metrics"

    @property
    def log_path(self) -> Path:
        """The server log file (exists once started; kept after stopping)."""
        if self._log_path is None:
            self._log_path = Path(tempfile.mkdtemp(prefix="medserve-triton-")) / LOG_FILENAME
        return self._log_path

    @property
    def pid(self) -> int | None:
        """Pid of the ``tritonserver`` process (also its process group), if started."""
        return self._proc.pid if self._proc is not None else None

    @property
    def shm_prefix(self) -> str:
        """Prefix of this server's Python-backend shared-memory regions in /dev/shm."""
        return self._shm_prefix

    # -- lifecycle -------------------------------------------------------

    def __enter__(self) -> LocalTriton:
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
        """Start the server and wait until it and every model are ready.

        Raises:
            UsageError: ``repo`` is not a model repository, or the binary is missing.
            ServerError: A port is in use, a model failed to load, the process
                died, or the server was not ready in time; the message quotes
                the server log. The process is stopped before raising.
        """
        if self._proc is not None:
            raise ServerError(f"this server is already started (pid {self._proc.pid})")
        self.check_repository()
        install = locate_tritonserver(self._tritonserver)
        backend_dir = ensure_python_stub(install)
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            try:
                self._launch(install, backend_dir)
                return
            except ServerError:
                # A port picked here was free when probed, but another process
                # (often a client's outgoing connection) may take it before
                # Triton binds it: pick new ones rather than fail.
                if attempt == _PORT_ATTEMPTS or not self._lost_a_chosen_port():
                    raise
                log.warning("a port chosen for tritonserver was taken meanwhile; new ports")

    def _launch(self, install: TritonInstall, backend_dir: Path | None) -> None:
        """Start the process on newly chosen ports and wait until it is ready."""
        self._ports = self._choose_ports()
        # Unique per server: the Python backend names its /dev/shm regions
        # with this prefix, and two servers with the same one would collide.
        self._shm_prefix = f"medserve_{secrets.token_hex(4)}_"
        command = [
            str(install.binary),
            f"--model-repository={self.repo.resolve()}",
            f"--model-config-name={self.config_name}",
            *self._control_args,
            "--strict-readiness=true",
            "--exit-on-error=true",
            f"--exit-timeout-secs={self.exit_timeout_s}",
            f"--http-address={self.host}",
            f"--http-port={self._ports['http']}",
            f"--grpc-address={self.host}",
            f"--grpc-port={self._ports['grpc']}",
            f"--metrics-address={self.host}",
            f"--metrics-port={self._ports['metrics']}",
            f"--backend-config=python,shm-region-prefix-name={self._shm_prefix}",
        ]
        if backend_dir is not None:
            command.append(f"--backend-directory={backend_dir}")
        if install.cache_dir is not None:
            command.append(f"--cache-directory={install.cache_dir}")
        command += self._extra_args

        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log.info("starting %s on %s (log: %s)", install.binary.name, self.repo, self.log_path)
        with self.log_path.open("wb") as log_file:
            try:
                self._proc = spawn_group(
                    command, env=server_environment(install), log_file=log_file
                )
            except OSError as exc:
                raise ServerError(f"cannot run {install.binary}: {exc.strerror}") from exc
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        log.info(
            "tritonserver ready (pid %d): gRPC %s, HTTP %s, models %s",
            self._proc.pid,
            self.grpc_url,
            self.http_url,
            ", ".join(sorted(self.models)),
        )

    def stop(self) -> None:
        """Stop the server and every process of its group; safe to call twice."""
        proc = self._proc
        if proc is None:
            return
        status = stop_group(proc, grace_s=self.exit_timeout_s + 10.0)
        # Forgotten only once stopped: if a second Ctrl-C interrupts the stop,
        # the caller's next stop() tries again instead of orphaning the group.
        self._proc = None
        log.info("tritonserver (pid %d) stopped (%s)", proc.pid, describe_exit_status(status))
        remove_shared_memory(self._shm_prefix)

    def is_alive(self) -> bool:
        """Whether the server process is running."""
        return self._proc is not None and self._proc.poll() is None

    def check_alive(self) -> None:
        """Raise if the server process has exited since it started.

        Raises:
            ServerError: With the exit status and the log lines that say why.
        """
        if self._proc is None:
            raise ServerError("the server is not started")
        status = self._proc.poll()
        if status is not None:
            raise ServerError(self._exit_message(status))

    def wait(self, timeout_s: float | None = None) -> int | None:
        """Wait for the server process to exit; returns its status, None on timeout."""
        if self._proc is None:
            return None
        try:
            return self._proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None

    # -- helpers ---------------------------------------------------------

    def check_repository(self) -> None:
        """Fail early if :attr:`repo` is not a model repository.

        Raises:
            UsageError: It does not exist or has no model config in it.
        """
        if not self.repo.is_dir():
            raise UsageError(
                f"model repository {self.repo} does not exist: run medserve export first"
            )
        models = [
            child.name
            for child in self.repo.iterdir()
            if (child / "config.pbtxt").is_file()
            or (child / "configs" / f"{self.config_name}.pbtxt").is_file()
        ]
        if not models:
            raise UsageError(
                f"{self.repo} is not a Triton model repository: no <model>/config.pbtxt or "
                f"<model>/configs/{self.config_name}.pbtxt in it; run medserve export first"
            )

    def _lost_a_chosen_port(self) -> bool:
        """Whether the server log says a port the launcher chose itself was in use."""
        chosen = [port for kind, port in self._ports.items() if self._requested_ports[kind] is None]
        lines = [line for line in tail_lines(self.log_path, 200) if "already in use" in line]
        return any(re.search(rf":{port}\b", line) for line in lines for port in chosen)

    def _choose_ports(self) -> dict[str, int]:
        for kind, port in self._requested_ports.items():
            if port is not None and not 1 <= port <= 65535:
                raise UsageError(f"{kind} port {port} is not a TCP port (1 to 65535)")
            if port is not None and port_in_use(port, self._probe_host):
                raise ServerError(
                    f"{kind} port {port} is already in use (another server?): choose another "
                    f"with --{kind}-port, or leave it out to use a free port"
                )
        given = {port for port in self._requested_ports.values() if port is not None}
        if len(given) < sum(port is not None for port in self._requested_ports.values()):
            raise UsageError("the http, grpc and metrics ports must differ")
        spare = iter(port for port in free_ports(6, self._probe_host) if port not in given)
        return {
            kind: port if port is not None else next(spare)
            for kind, port in self._requested_ports.items()
        }

    @property
    def _probe_host(self) -> str:
        return "0.0.0.0" if self.host in ("", "0.0.0.0") else self.host

    def _wait_until_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.startup_timeout_s
        while True:
            status = self._proc.poll()
            if status is not None:
                raise ServerError(self._exit_message(status))
            if http_ok(self.http_url + "/v2/health/ready"):
                break
            if time.monotonic() >= deadline:
                raise ServerError(
                    f"tritonserver was not ready within {self.startup_timeout_s:.0f} s "
                    "(raise it with --startup-timeout-s on a slow machine); "
                    + explain_failure(self.log_path)
                )
            time.sleep(_POLL_S)
        self.models = self._ready_models()

    def _ready_models(self) -> dict[str, str]:
        """Model name -> version of every READY model, from the repository index."""
        body = http_json(
            self.http_url + "/v2/repository/index", data=b"{}", headers=self._admin_headers
        )
        models = {}
        for entry in body if isinstance(body, list) else []:
            if entry.get("state") == "READY":
                models[entry["name"]] = str(entry.get("version", ""))
            else:
                raise ServerError(
                    f"model {entry.get('name')} is {entry.get('state')}: {entry.get('reason')}; "
                    + explain_failure(self.log_path)
                )
        return models

    def _exit_message(self, status: int) -> str:
        message = f"tritonserver (pid {self.pid}) {describe_exit_status(status)}"
        in_use = [line for line in tail_lines(self.log_path, 200) if "already in use" in line]
        if in_use:
            message += f"; a port is already in use: {in_use[-1].strip()}"
        return f"{message}; {explain_failure(self.log_path)}"
