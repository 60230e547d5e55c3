"""The PyTriton peer: the same model as a Python callable behind PyTriton's Triton.

Usage::

    python -m medserve_bench.pytriton_peer work/bench/repo/medcnn/configs/local.pbtxt \\
        work/bench/repo/medcnn/1 --name medcnn_pytriton --http-port 8100 --grpc-port 8101 \\
        --metrics-port 8102 --workspace /tmp/medserve-pytriton

    with PyTritonPeer(config_path, version_dir, name="medcnn_pytriton",
                      log_path=out / "pytriton.log") as peer:
        peer.grpc_url, peer.model, peer.pid, peer.runtime

This is what a user would pick instead of medserve to serve a Keras model on
Triton without writing a model repository: NVIDIA's PyTriton binds a Python
callable to a model of its own ``tritonserver`` (the same binary as the
nvidia-pytriton wheel medserve's local server runs). To compare serving, not
settings, the peer copies everything that shapes throughput from the config
medserve serves (``configs/local.pbtxt`` of the bench repository, which is the
tuned config when one exists):

- the dynamic batcher: ``max_batch_size``, ``max_queue_delay_microseconds``
  and the preferred batch sizes;
- the runtime: config parameter ``runtime`` (``tensorflow`` runs the version's
  ``model.savedmodel``, ``onnxruntime`` its ``onnx_file``, default
  ``model.onnx``), loaded by medserve's backend's own runner
  (:func:`medserve.triton_backend.runtimes.load_runner`) with the thread pools
  the backend would choose (:func:`medserve.triton_backend.threads.choose_thread_pools`)
  and one callable (one session) per configured instance. The callable is
  exactly what medserve's backend runs per batch; only the serving around it
  differs.

It runs in its own process, started by :class:`PyTritonPeer`, so its callable
does not share a GIL with the load generator. PyTriton's Python-backend stub
embeds CPython through the dynamic linker; on an interpreter whose
``libpython`` is not the system's it loads another one and fails
(``'_thread.RLock' object has no attribute '_recursion_count'``), so the
process gets medserve's server environment
(:func:`medserve.stub.server_environment`: this interpreter's ``libpython``
first on ``LD_LIBRARY_PATH``), which PyTriton extends with its own libraries.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, Any

import numpy as np

from medserve.triton_backend.served_config import SAVEDMODEL_DIRNAME, ServedConfig

log = logging.getLogger(__name__)

PEER_SUFFIX = "_pytriton"


@dataclass(frozen=True)
class PeerSettings:
    """What the peer copies from medserve's served config.

    Attributes:
        served: The config as medserve's backend reads it (runtime, ``onnx_file``,
            tensors): the peer's callable loads the model with the backend's own
            runner (:func:`medserve.triton_backend.runtimes.load_runner`).
        version_dir: The model version directory the runtime loads from.
        max_queue_delay_us: How long the batcher may hold a request.
        preferred_batch_sizes: The batcher's preferred batch sizes.
        intra_op: Intra-op threads per instance.
        inter_op: Inter-op threads per instance.
        instances: Model instances (one callable each).
        input_dims: The image input's dims without the batch axis.
    """

    served: ServedConfig
    version_dir: Path
    max_queue_delay_us: int
    preferred_batch_sizes: tuple[int, ...]
    intra_op: int
    inter_op: int
    instances: int
    input_dims: tuple[int, ...]

    @property
    def artifact(self) -> str:
        """The file or directory the runtime opens, by name."""
        runtime = self.served.runtime
        return self.served.onnx_file if runtime == "onnxruntime" else SAVEDMODEL_DIRNAME


def settings_from_config(config_path: Path, version_dir: Path, cpus: int) -> PeerSettings:
    """Read the batcher, runtime and threads medserve serves with from ``config_path``.

    Raises:
        ValueError: The config has no dynamic batcher, or is one the backend refuses.
    """
    from google.protobuf import json_format, text_format
    from tritonclient.grpc import model_config_pb2

    from medserve.triton_backend.threads import choose_thread_pools, instance_count

    config = text_format.Parse(
        config_path.read_text(encoding="utf-8"), model_config_pb2.ModelConfig()
    )
    if not config.HasField("dynamic_batching"):
        raise ValueError(f"{config_path} has no dynamic_batching: nothing for the peer to copy")
    # The JSON Triton hands the backend, so the backend's own parser reads it.
    as_json = json_format.MessageToJson(config, preserving_proto_field_name=True)
    served = ServedConfig.from_json(as_json)
    intra, inter = choose_thread_pools(served.model_config, cpus)
    batching = config.dynamic_batching
    return PeerSettings(
        served=served, version_dir=version_dir,
        max_queue_delay_us=batching.max_queue_delay_microseconds,
        preferred_batch_sizes=tuple(batching.preferred_batch_size),
        intra_op=intra, inter_op=inter, instances=instance_count(served.model_config),
        input_dims=tuple(config.input[0].dims),
    )  # fmt: skip


def describe(settings: PeerSettings) -> str:
    """One line saying what the peer runs, for the report."""
    preferred = ",".join(str(size) for size in settings.preferred_batch_sizes) or "none"
    return (
        f"PyTriton callable runs {settings.served.runtime} on {settings.artifact} with "
        f"medserve's own backend runner and served config: max batch "
        f"{settings.served.max_batch_size}, queue delay {settings.max_queue_delay_us} us, "
        f"preferred batch sizes {preferred}, {settings.instances} instance(s) with "
        f"intra/inter-op threads {settings.intra_op}/{settings.inter_op}; its own process"
    )


def _log(level: str, message: str) -> None:
    log.log(logging.WARNING if level == "warn" else logging.INFO, "%s", message)


def _callable(settings: PeerSettings) -> Callable[..., dict[str, np.ndarray]]:
    """One inference callable with its own runtime session, batched by PyTriton."""
    from pytriton.decorators import batch

    from medserve.triton_backend.runtimes import load_runner

    served = settings.served
    runner = load_runner(served, settings.version_dir, intra_op=settings.intra_op,
                         inter_op=settings.inter_op, log=_log)  # fmt: skip
    (input_name, _), *_ = served.inputs
    (output_name, _, _), *_ = served.outputs
    # Traced and allocated before the server reports ready, as Triton's warm-up does.
    runner.run({input_name: np.zeros((1, *settings.input_dims), dtype=np.uint8)})

    @batch
    def infer(**inputs: np.ndarray) -> dict[str, np.ndarray]:
        outputs = runner.run({input_name: inputs[input_name]})
        return {output_name: np.asarray(outputs[output_name], np.float32)}

    return infer


def serve(settings: PeerSettings, name: str, ports: dict[str, int], workspace: Path) -> None:
    """Bind the model to PyTriton's Triton on ``ports`` and serve until SIGTERM or SIGINT."""
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt  # Triton.serve() stops the server and cleans up on it.

    signal.signal(signal.SIGTERM, stop)
    config = TritonConfig(
        http_address="127.0.0.1", http_port=ports["http"], grpc_address="127.0.0.1",
        grpc_port=ports["grpc"], metrics_port=ports["metrics"],
    )  # fmt: skip
    batcher = DynamicBatcher(
        max_queue_delay_microseconds=settings.max_queue_delay_us,
        preferred_batch_size=list(settings.preferred_batch_sizes) or None,
    )
    # No restricted endpoints, like medserve's local server on loopback: the
    # bench reads the peer's statistics API as it reads medserve's.
    security = TritonSecurityConfig(restricted_endpoints=[])
    (input_name, _), *_ = settings.served.inputs
    (output_name, _, output_dims), *_ = settings.served.outputs
    with Triton(config=config, workspace=workspace, security_config=security) as triton:
        triton.bind(
            model_name=name,
            infer_func=[_callable(settings) for _ in range(settings.instances)],
            inputs=[Tensor(name=input_name, dtype=np.uint8, shape=settings.input_dims)],
            outputs=[Tensor(name=output_name, dtype=np.float32, shape=output_dims)],
            config=ModelConfig(max_batch_size=settings.served.max_batch_size, batcher=batcher),
            strict=True,
        )
        log.info("PyTriton peer %s: %s", name, describe(settings))
        triton.serve()


class PyTritonPeer:
    """Runs :func:`serve` in its own process (and process group); stops it on exit."""

    def __init__(
        self,
        config_path: Path,
        version_dir: Path,
        *,
        name: str,
        log_path: Path,
        start_timeout_s: float = 240.0,
    ) -> None:
        self.config_path, self.version_dir = config_path, version_dir
        self.model = name
        self.log_path = log_path
        self.workspace: Path | None = None
        self.start_timeout_s = start_timeout_s
        self._process: Any = None
        self._log: IO[bytes] | None = None
        self._ports: dict[str, int] = {}

    @property
    def grpc_url(self) -> str:
        """``host:port`` for ``tritonclient.grpc``."""
        return f"127.0.0.1:{self._ports['grpc']}"

    @property
    def pid(self) -> int | None:
        """Pid of the peer process (the root of its tritonserver and stubs), if running."""
        return self._process.pid if self._process is not None else None

    def start(self) -> PyTritonPeer:
        """Start the peer and wait until its model is ready.

        Raises:
            RuntimeError: It exited, or was not ready within ``start_timeout_s``
                (the message quotes its log).
        """
        self.launch()
        return self.wait_ready()

    def launch(self) -> None:
        """Start the peer's process without waiting (it loads its model meanwhile)."""
        from medserve.ports import free_ports
        from medserve.process_group import spawn_group
        from medserve.stub import locate_tritonserver, server_environment

        # PyTriton's callable and its proxy talk over unix sockets in the
        # workspace, whose paths must stay under 107 characters: a short
        # temporary directory, not one under the caller's (maybe deep) work dir.
        self.workspace = Path(tempfile.mkdtemp(prefix="medserve-pytriton-"))
        workspace = self.workspace / "ws"  # PyTriton creates it (and refuses an existing one).
        http, grpc, metrics = free_ports(3)
        self._ports = {"http": http, "grpc": grpc, "metrics": metrics}
        command = [
            sys.executable, "-m", "medserve_bench.pytriton_peer", str(self.config_path),
            str(self.version_dir), "--name", self.model, "--workspace", str(workspace),
            "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics),
        ]  # fmt: skip
        # medserve's own launcher environment: this interpreter's libpython first.
        env = server_environment(locate_tritonserver())
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("wb")
        self._process = spawn_group(command, env=env, log_file=self._log)

    def wait_ready(self) -> PyTritonPeer:
        """Wait until the peer's model is ready; stop the peer if it never is."""
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        from medserve.http_probe import http_ok

        if self._process is None:
            raise RuntimeError("the PyTriton peer is not launched")
        url = f"http://127.0.0.1:{self._ports['http']}/v2/models/{self.model}/ready"
        deadline = time.monotonic() + self.start_timeout_s
        while not http_ok(url):
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"the PyTriton peer exited with {self._process.returncode}: {self._tail()}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the PyTriton peer was not ready within {self.start_timeout_s:.0f} s: "
                    f"{self._tail()}"
                )
            time.sleep(0.5)

    def _tail(self) -> str:
        from medserve.server_log import tail_lines

        return " | ".join(line.strip() for line in tail_lines(self.log_path, 8))

    def stop(self) -> None:
        """Stop the peer's whole process group; safe to call twice."""
        from medserve.process_group import stop_group

        process, self._process = self._process, None
        try:
            if process is not None:
                stop_group(process, grace_s=30.0)
        finally:
            if self.workspace is not None:
                shutil.rmtree(self.workspace, ignore_errors=True)
                self.workspace = None
            if self._log is not None:
                self._log.close()
                self._log = None

    def __enter__(self) -> PyTritonPeer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    """Serve the peer as ``argv`` says (what :class:`PyTritonPeer` runs)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path, help="the config medserve serves (local.pbtxt)")
    parser.add_argument("version_dir", type=Path, help="the model version directory")
    parser.add_argument("--name", required=True)
    parser.add_argument("--workspace", type=Path, required=True)
    for kind in ("http", "grpc", "metrics"):
        parser.add_argument(f"--{kind}-port", type=int, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from medserve.triton_backend.threads import available_cpus

    settings = settings_from_config(args.config, args.version_dir, available_cpus())
    ports = {"http": args.http_port, "grpc": args.grpc_port, "metrics": args.metrics_port}
    serve(settings, args.name, ports, args.workspace)
    return 0


if __name__ == "__main__":
    sys.exit(main())
