"""Session fixtures of the integration tests: a tiny exported model on a real tritonserver.

Usage (in a test module of this folder)::

    pytestmark = pytest.mark.integration

    def test_something(local_triton, served_repo, savedmodel_reference):
        client = tritonclient.grpc.InferenceServerClient(local_triton.grpc_url)

Fixtures:
    served_spec: the :class:`~medserve.spec.ModelSpec` of the tiny model (32x32, 2 labels).
    served_keras_model: the tiny Keras model as ``served_repo`` serves it (with its
        temperature layer, :data:`served_model_builder.SERVED_TEMPERATURE`).
    served_repo: a model repository written by ``export_model`` (medcnn,
        medcnn_preprocess, medcnn_encoded, medcnn_explain), the same layout as production.
    savedmodel_reference: the same SavedModels called in-process (the expected outputs).
    local_triton: ONE started :class:`~medserve.local_triton.LocalTriton` for the
        session, on ``served_repo`` plus a test-only model
        ``medcnn_preprocess_batched`` (the decoder with dynamic batching, to
        exercise the backend's batched call and its per-request fallback),
        described by ``batched_decoder``.
    start_server: a factory for short-lived servers of the fault tests, each
        stopped at teardown.

At the end of the session no ``tritonserver`` or backend stub process that
serves a repository of this session may be alive: ``pytest_sessionfinish``
kills any it finds and fails the run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from served_model_builder import SERVED_TEMPERATURE, build_served_keras_model

from medserve.local_triton import LocalTriton
from medserve.spec import SAVEDMODEL_DIRNAME, ModelSpec
from medserve_client import contract

# Generous: on a shared 2-core machine each backend stub imports TensorFlow
# (seconds of CPU each) while other work runs.
STARTUP_TIMEOUT_S = 240.0
BATCHED_DECODER = "medcnn_preprocess_batched"
# The test-only decoder waits this long to fill a batch of BATCHED_DECODER_SIZE,
# so concurrent requests reliably share one execution.
BATCHED_DECODER_SIZE = 8
BATCHED_DECODER_DELAY_US = 3_000_000
BATCHED_DECODER_INTRA_OP_THREADS = 1

_session_roots: set[Path] = set()


@dataclass(frozen=True)
class SavedModelReference:
    """The exported SavedModels called in-process: what the server must return."""

    classifier: Any
    decoder: Any
    spec: ModelSpec

    def classify(self, images: np.ndarray) -> np.ndarray:
        """Probabilities of the classifier SavedModel for uint8 images ``[N, H, W, 3]``."""
        import tensorflow as tf

        result = self.classifier(**{self.spec.input_name: tf.constant(images)})
        return np.asarray(result[self.spec.output_name].numpy())

    def decode(self, encoded: list[bytes]) -> np.ndarray:
        """uint8 images of the preprocessing SavedModel for encoded files."""
        import tensorflow as tf

        name = next(iter(self.decoder.structured_input_signature[1]))
        rank = self.decoder.structured_input_signature[1][name].shape.rank
        batch = np.array(encoded, dtype=object)
        if rank == 2:
            batch = batch.reshape(-1, 1)
        result = self.decoder(**{name: tf.constant(batch)})
        return np.asarray(result[self.spec.input_name].numpy())


@dataclass(frozen=True)
class BatchedDecoder:
    """The test-only decoder model the session server also serves."""

    name: str = BATCHED_DECODER
    max_batch_size: int = BATCHED_DECODER_SIZE
    max_queue_delay_us: int = BATCHED_DECODER_DELAY_US
    intra_op_threads: int = BATCHED_DECODER_INTRA_OP_THREADS


@pytest.fixture(scope="session")
def batched_decoder() -> BatchedDecoder:
    """Name and batching of ``medcnn_preprocess_batched`` (input ``image_bytes``)."""
    return BatchedDecoder()


@pytest.fixture(scope="session")
def served_spec() -> ModelSpec:
    """The tiny model's spec: 32x32 RGB, labels ("normal", "lesion")."""
    return ModelSpec(
        name="medcnn", labels=("normal", "lesion"), image_size=(32, 32), max_batch_size=16
    )


@pytest.fixture(scope="session")
def served_keras_model(served_spec: ModelSpec) -> Any:
    """The Keras model as ``served_repo`` serves it: the tiny CNN and its temperature layer."""
    from medserve.temperature import with_temperature

    return with_temperature(build_served_keras_model(served_spec), SERVED_TEMPERATURE)


@pytest.fixture(scope="session")
def served_repo(tmp_path_factory: pytest.TempPathFactory, served_spec: ModelSpec) -> Path:
    """A repository written by ``export_model`` for a tiny reference CNN."""
    from medserve.exporter import export_model

    _session_roots.add(tmp_path_factory.getbasetemp().resolve())
    repo = tmp_path_factory.mktemp("served") / "model_repository"
    # Served calibrated, as a trained model is: every served probability
    # passes through the temperature layer of the exported graph.
    calibration = {"temperature": SERVED_TEMPERATURE, "applied": True, "note": "test input"}
    export_model(
        build_served_keras_model(served_spec),
        repo,
        served_spec,
        training_summary={"calibration": calibration},
    )
    return repo


@pytest.fixture(scope="session")
def savedmodel_reference(served_repo: Path, served_spec: ModelSpec) -> SavedModelReference:
    """The classifier and decoder SavedModels of ``served_repo``, loaded in this process."""
    import tensorflow as tf

    def load(model_name: str) -> Any:
        version = max(int(p.name) for p in (served_repo / model_name).iterdir() if p.name.isdigit())
        loaded = tf.saved_model.load(
            str(served_repo / model_name / str(version) / SAVEDMODEL_DIRNAME)
        )
        return loaded.signatures["serving_default"]

    return SavedModelReference(
        classifier=load(served_spec.name),
        decoder=load(contract.preprocess_model(served_spec.name)),
        spec=served_spec,
    )


def _batched_decoder_repo(served_repo: Path, spec: ModelSpec, target: Path) -> Path:
    """A repository with the exported decoder under a new name, with dynamic batching."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    source = served_repo / contract.preprocess_model(spec.name)
    model_dir = target / BATCHED_DECODER
    shutil.copytree(source, model_dir)
    config_file = model_dir / "configs" / "local.pbtxt"
    config = text_format.Parse(config_file.read_text(), model_config_pb2.ModelConfig())
    config.name = BATCHED_DECODER
    config.max_batch_size = BATCHED_DECODER_SIZE
    config.dynamic_batching.max_queue_delay_microseconds = BATCHED_DECODER_DELAY_US
    # Exercises the template's thread-pool override (see test_served_model).
    config.parameters["intra_op_threads"].string_value = str(BATCHED_DECODER_INTRA_OP_THREADS)
    config_file.write_text(text_format.MessageToString(config))
    (model_dir / "config.pbtxt").unlink(missing_ok=True)  # Only the local config is served.
    return target


@pytest.fixture(scope="session")
def local_triton(
    served_repo: Path, served_spec: ModelSpec, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalTriton]:
    """The session's server: ``served_repo`` plus the test-only batched decoder."""
    root = tmp_path_factory.mktemp("session_server")
    extra = _batched_decoder_repo(served_repo, served_spec, root / "test_models")
    server = LocalTriton(
        served_repo,
        startup_timeout_s=STARTUP_TIMEOUT_S,
        log_path=root / "tritonserver.log",
        extra_args=[f"--model-repository={extra}"],
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def start_server(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., LocalTriton]]:
    """Factory: ``start_server(repo, **kwargs)`` starts a LocalTriton, stopped at teardown."""
    _session_roots.add(tmp_path_factory.getbasetemp().resolve())
    servers: list[LocalTriton] = []

    def start(repo: Path, **kwargs: Any) -> LocalTriton:
        kwargs.setdefault("startup_timeout_s", STARTUP_TIMEOUT_S)
        kwargs.setdefault("log_path", tmp_path / f"tritonserver-{len(servers)}.log")
        server = LocalTriton(repo, **kwargs)
        servers.append(server)
        server.start()
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.stop()


def session_processes(roots: set[Path]) -> list[tuple[int, str]]:
    """Live tritonserver / stub processes whose command line names a path under ``roots``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        command = " ".join(part.decode(errors="replace") for part in argv if part)
        if state == "Z" or not ("tritonserver" in command or "backend_stub" in command):
            continue
        # With the separator: pytest-5 must not match a later session's pytest-51.
        if any(str(root) + os.sep in command for root in roots):
            found.append((int(entry.name), command[:200]))
    return found


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if a server of this session survived it (and kill the survivors)."""
    if not _session_roots:
        return
    survivors = session_processes(_session_roots)
    if not survivors:
        return
    for pid, _ in survivors:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(
            "ERROR: tritonserver processes survived the test session (killed now): "
            + "; ".join(f"{pid} {command}" for pid, command in survivors),
            red=True,
        )
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def client(local_triton: LocalTriton) -> Iterator[Any]:
    """A plain ``tritonclient`` gRPC client on the session server (closed after the test)."""
    with grpcclient.InferenceServerClient(local_triton.grpc_url) as grpc_client:
        yield grpc_client
